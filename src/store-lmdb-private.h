#ifndef STORE_LMDB_PRIVATE_H
#define STORE_LMDB_PRIVATE_H

/* What the files of the LMDB driver share. Only these files include
   <lmdb.h>. */

#include "loopguard-store-private.h"
#include "store-lmdb.h"
#include "store-lmdb-verified.h"

#include <sys/stat.h>
#include <lmdb.h>

/* One per data file and process, shared by all stores open on that file
   (store-lmdb-env.c). */
struct store_lmdb_env {
	struct store_lmdb_env *prev, *next;

	char *path;
	/* NULL once the environment broke and was closed */
	MDB_env *env;
	/* Our own descriptor of the lock file, open as long as env (closing
	   it earlier would drop LMDB's fcntl() locks): it tells whether LMDB
	   locked the current lock file, and moves a broken file aside. */
	int lock_fd;
	MDB_dbi records_dbi, log_dbi, meta_dbi;
	pid_t pid;
	unsigned int refcount;
	size_t max_key_size;
	/* Ordinary writes grow the map up to soft_map_size; deletions may
	   use the reserve up to hard_map_size (max_size). The first open
	   in the process sets them. */
	size_t soft_map_size, hard_map_size;

	/* Listed among the open environments, so that opens of the path
	   share it. */
	bool registered:1;
	/* inherited over fork(), never used again */
	bool inherited:1;
	/* The environment failed and is closed (env == NULL); the stores
	   left only get closed. */
	bool broken:1;

	/* What the environment was opened for, so that an idle one is
	   reused only for the same file and limits. */
	dev_t dev;
	ino_t ino;
	uoff_t max_size;
	/* The data file as this process last found it sound: walked, or
	   committed to by it from a sound state. */
	struct store_lmdb_file_state known;
	/* The open write transaction began on a file known to be sound, so
	   that its commit may be recorded as sound too. */
	bool write_on_sound;
	/* Whether the file held fingerprints of the general form when
	   last looked at (legacy_checked, 0 for never): a store without
	   them is not searched for them at every check. */
	time_t legacy_checked;
	bool legacy_fingerprints;
	/* where the next search for room in a full map goes on */
	buffer_t *room_position;
	/* The delivery transaction open on this file in this process: every
	   read and write of any store goes into it, as a second write
	   transaction of this process would wait for the first for ever. */
	struct store_lmdb_delivery *delivery;
};

struct store_lmdb {
	struct loopguard_store store;
	struct store_lmdb_env *env;
	unsigned int log_size;
};

struct store_lmdb_delivery {
	struct store_lmdb *store;
	/* NULL when it could not be begun again after MDB_MAP_FULL, or the
	   environment broke: the delivery then only fails */
	MDB_txn *txn;
	/* a change is in txn: starting txn afresh would lose it */
	bool written:1;
	/* the map was too small for a change: grow it once txn ended */
	bool grow:1;
	/* it has searched the full map for room once */
	bool room_searched:1;
	/* a change whose pages are not counted went into txn: every later
	   change is followed by the room check */
	bool uncounted:1;

	/* free pages after the last page in use when txn began */
	size_t room_pages;
	/* the most pages the changes in txn can have taken */
	size_t changes_pages;
	/* records written and deleted by the running change, and the
	   overflow pages its values need */
	unsigned int change_ops, change_overflow_pages;
};

/* Runs inside a write transaction. Returns 0 or an MDB error code, with
   *func_r naming the call that failed. */
typedef int
store_lmdb_txn_func_t(struct store_lmdb *store, MDB_txn *txn, void *context,
		      const char **func_r);

/* Unreadable records met inside a transaction: they are logged after it
   ends, not while a write transaction keeps every other delivery waiting. */
struct store_lmdb_unreadable {
	unsigned int count;
	char first_error[128];
};

/* One step of the sweep or the purge: examines up to max_scan records
   from start (the first record when empty), deletes the dead ones among
   them (at most max_deletes), and leaves in next_key where the next step
   goes on, or nothing when it reached the end. */
struct store_lmdb_reap {
	const buffer_t *start;
	unsigned int max_scan, max_deletes;
	time_t now;

	buffer_t *next_key;
	/* scratch: the keys to delete */
	buffer_t *dead;
	unsigned int deleted;
	struct store_lmdb_unreadable unreadable;
};

/* Records examined per update by the incremental sweep. */
#define STORE_LMDB_SWEEP_COUNT 16

struct store_lmdb_map_sizes {
	/* max_size: the reserve is used only for deletions */
	size_t hard;
	/* ordinary writes grow the map up to here */
	size_t soft;
	/* what a new environment starts with */
	size_t initial;
};

static inline struct store_lmdb *store_lmdb_cast(struct loopguard_store *store)
{
	i_assert(store->driver == &loopguard_store_driver_lmdb);
	return (struct store_lmdb *)store;
}

/* store-lmdb-env.c: the registry of open environments, the idle cache,
   fork() */
int store_lmdb_env_get(const struct loopguard_store_settings *set,
		       struct store_lmdb_env **env_r, const char **error_r);
void store_lmdb_env_release(struct store_lmdb_env **env);
void store_lmdb_env_keep_idle(bool keep);
/* Takes a failed environment out of use at once: its stores fail from
   now on, and the next open of the path gets a fresh environment. */
void store_lmdb_env_shut(struct store_lmdb_env *env);
/* Whether the data file, with txnid the last transaction committed to
   it, is in a state known to be sound, to this process or to the one that
   recorded it in the file (store-lmdb-verified.h). Fills state_r, when
   not NULL, with the state it looked at (zeroed when it could not). */
bool store_lmdb_env_file_sound(struct store_lmdb_env *env, uint64_t txnid,
			       struct store_lmdb_file_state *state_r);
/* Fails for a store used after fork() or whose environment broke. */
int store_lmdb_check(struct store_lmdb *store, const char **error_r);

/* store-lmdb-recovery.c: damaged files, errors, network file systems */
const char *store_lmdb_mdb_error(const char *path, const char *func, int rc);
bool store_lmdb_rc_is_corruption(int rc);
const char *store_lmdb_lock_path(const char *path);
int store_lmdb_lock_is_current(const char *path, int fd,
			       const char **error_r);
const char *store_lmdb_move_aside(const char *path, int *lock_fd,
				  const char *reason);
const char *store_lmdb_failed(struct store_lmdb_env *env, const char *func,
			      int rc);
int store_lmdb_env_verify(struct store_lmdb_env *env, const char **error_r);
int store_lmdb_check_local(const struct loopguard_store_settings *set,
			   const char **error_r);

/* store-lmdb-map.c: map sizes and the write transaction's retries */
size_t store_lmdb_page_size(void);
void store_lmdb_map_sizes_get(uoff_t max_size,
			      struct store_lmdb_map_sizes *sizes_r);
int store_lmdb_map_adopt(struct store_lmdb_env *env);
int store_lmdb_txn_begin(struct store_lmdb_env *env, bool write,
			 MDB_txn **txn_r);
/* Commits a top-level write transaction begun by store_lmdb_txn_begin(),
   recording the file as sound after it when it was before. A failed
   commit frees the transaction too. */
int store_lmdb_txn_commit(struct store_lmdb_env *env, MDB_txn *txn);
int store_lmdb_write_once(struct store_lmdb *store,
			  store_lmdb_txn_func_t *func, void *context,
			  const char **func_r);
bool store_lmdb_grow(struct store_lmdb_env *env);
bool store_lmdb_reserve_use(struct store_lmdb_env *env);
void store_lmdb_reserve_release(struct store_lmdb_env *env);
int store_lmdb_map_full_error(struct store_lmdb *store,
			      const char *func_name, const char *grow_note,
			      const char **error_r);
/* A write transaction with the map handling: MDB_MAP_RESIZED adopts the
   new size, MDB_MAP_FULL purges, grows and retries once. A func that only
   deletes may then also use the reserve. func may run more than once, so
   it must not have side effects outside the transaction. Inside a
   delivery, the change goes into the delivery's transaction. Returns 0,
   -1, or LOOPGUARD_STORE_FULL when the map is at its limit with nothing
   expired. */
int store_lmdb_write(struct store_lmdb *store, time_t now, bool deletes_only,
		     store_lmdb_txn_func_t *func, void *context,
		     const char **error_r);

/* store-lmdb-delivery.c: the delivery's transaction */
int store_lmdb_delivery_write(struct store_lmdb *store, time_t now,
			      store_lmdb_txn_func_t *func, void *context,
			      const char **error_r);
int store_lmdb_delivery_begin(struct loopguard_store *store,
			      const char **error_r);
int store_lmdb_delivery_commit(struct loopguard_store *store,
			       const char **error_r);
void store_lmdb_delivery_abort(struct loopguard_store *store);
/* mdb_put() and mdb_del() for the records and the metadata: inside a
   delivery they count the change's pages (see store-lmdb-delivery.c). */
int store_lmdb_put(struct store_lmdb_env *env, MDB_txn *txn, MDB_dbi dbi,
		   MDB_val *key, MDB_val *value);
int store_lmdb_del(struct store_lmdb_env *env, MDB_txn *txn, MDB_dbi dbi,
		   MDB_val *key);
/* A change made otherwise (the log's): its pages are not counted. */
void store_lmdb_delivery_uncounted(struct store_lmdb_env *env);

/* store-lmdb-records.c: records as the codec builds them */
void store_lmdb_key_build(const struct store_lmdb_env *env,
			  enum loopguard_codec_kind kind,
			  const char *handle, const char *key,
			  buffer_t *dest);
bool store_lmdb_record_is_dead(const struct store_lmdb_env *env,
			       const MDB_val *k, const MDB_val *v, time_t now,
			       struct store_lmdb_unreadable *unreadable);
void store_lmdb_unreadable_merge(struct store_lmdb_unreadable *dest,
				 const struct store_lmdb_unreadable *src);
/* what: "ignoring" or "dropped" */
void store_lmdb_unreadable_log(struct store_lmdb *store,
			       const struct store_lmdb_unreadable *unreadable,
			       const char *what);
/* Walks a named database in key order in one read transaction. visit
   runs inside T_BEGIN/T_END and returns FALSE to stop. */
typedef bool
store_lmdb_scan_visit_t(const MDB_val *key, const MDB_val *value,
			void *context);
int store_lmdb_scan(struct store_lmdb *store, MDB_dbi dbi,
		    store_lmdb_scan_visit_t *visit, void *context,
		    const char **error_r);

int store_lmdb_kind_present(struct store_lmdb *store,
			    enum loopguard_codec_kind kind, bool *present_r,
			    const char **error_r);

/* store-lmdb-purge.c: the sweep, room in a full map, purge */
int store_lmdb_reap(struct store_lmdb_env *env, MDB_txn *txn,
		    struct store_lmdb_reap *reap, const char **func_r);
int store_lmdb_sweep(struct store_lmdb *store, MDB_txn *txn,
		     struct store_lmdb_reap *sweep, const char **func_r);
int store_lmdb_make_room(struct store_lmdb *store, time_t now,
			 const char **func_r);
int store_lmdb_purge(struct loopguard_store *store, time_t now, bool all,
		     unsigned int *purged_r, const char **error_r);

/* store-lmdb-log.c: the capped log */
int store_lmdb_log_append(struct loopguard_store *store,
			  const struct loopguard_store_event *event,
			  const char **error_r);
int store_lmdb_log_iterate(struct loopguard_store *store, time_t since,
			   loopguard_store_log_callback_t *callback,
			   void *context, const char **error_r);

#endif
