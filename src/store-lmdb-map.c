/* The LMDB driver's map: its sizes, growing it, and the write
   transaction that retries when the map is full or was resized. */

#include "lib.h"
#include "buffer.h"

#include "store-lmdb-private.h"

#include <unistd.h>

/* The map only reserves address space (no MDB_WRITEMAP), and the file grows
   page by page whatever its size. Starting small keeps the address space
   of a process that opens many users' stores (doveadm -A) modest; a store
   that needs more doubles its map on MDB_MAP_FULL. */
#define STORE_LMDB_INITIAL_MAP_SIZE (1024 * 1024)
/* Room for the meta pages, the three named databases, some records and
   the reserve. */
#define STORE_LMDB_MIN_MAP_SIZE (128 * 1024)
/* The top 1/16 of max_size (at least this many pages) is kept free for
   deletions: in a map that is completely full even a delete fails, since
   LMDB copies every page it changes, and a store that can no longer drop
   its expired records would stay full for good. */
#define STORE_LMDB_RESERVE_DIVISOR 16
#define STORE_LMDB_RESERVE_MIN_PAGES 16

#define STORE_LMDB_MAX_RESIZE_RETRIES 3

size_t store_lmdb_page_size(void)
{
	long page_size = sysconf(_SC_PAGESIZE);

	return page_size > 0 ? (size_t)page_size : 4096;
}

static size_t store_lmdb_round_to_page(size_t size)
{
	size_t page_size = store_lmdb_page_size();

	return size - size % page_size;
}

/* Adopts the map size stored in the file by the last writer, but not the
   reserve: a process that had to use it for a purge stores its larger
   size, and the others must not take that for ordinary room. LMDB never
   maps less than the space in use. */
int store_lmdb_map_adopt(struct store_lmdb_env *env)
{
	MDB_envinfo info;
	int rc;

	if ((rc = mdb_env_set_mapsize(env->env, 0)) != 0 ||
	    (rc = mdb_env_info(env->env, &info)) != 0)
		return rc;
	if (info.me_mapsize > env->soft_map_size)
		return mdb_env_set_mapsize(env->env, env->soft_map_size);
	return 0;
}

int
store_lmdb_txn_begin(struct store_lmdb_env *env, bool write,
		     MDB_txn **txn_r)
{
	unsigned int i;
	int rc;

	for (i = 0;; i++) {
		rc = mdb_txn_begin(env->env, NULL, write ? 0 : MDB_RDONLY,
				   txn_r);
		if (rc == 0 && write) {
			/* under the writer lock: no commit can come between
			   this look and the transaction's own */
			env->write_on_sound = store_lmdb_env_file_sound(
				env, mdb_txn_id(*txn_r) - 1, NULL);
		}
		if (rc != MDB_MAP_RESIZED ||
		    i == STORE_LMDB_MAX_RESIZE_RETRIES)
			return rc;
		/* Another process grew the map past ours. No transaction of
		   ours is active here, so adopting its size is allowed. */
		rc = store_lmdb_map_adopt(env);
		if (rc != 0)
			return rc;
	}
}

/* When the file was sound before the transaction, it is sound after it, as
   LMDB writes only pages of its own; that is recorded for the next opener,
   unless another commit came in between or this one wrote nothing: the
   transaction ids tell. */
int store_lmdb_txn_commit(struct store_lmdb_env *env, MDB_txn *txn)
{
	uint64_t txnid = mdb_txn_id(txn);
	struct store_lmdb_file_state state;
	MDB_envinfo info;
	int rc, fd;

	if ((rc = mdb_txn_commit(txn)) != 0 || !env->write_on_sound)
		return rc;
	env->write_on_sound = FALSE;
	/* The id first, then the file: a commit by someone else in
	   between leaves the file with a later id than the one recorded. */
	if (mdb_env_info(env->env, &info) == 0 &&
	    info.me_last_txnid == txnid &&
	    mdb_env_get_fd(env->env, &fd) == 0 &&
	    store_lmdb_file_state_get(fd, txnid, &state) == 0) {
		env->known = state;
		store_lmdb_verified_set(fd, &state);
	}
	return 0;
}

int
store_lmdb_write_once(struct store_lmdb *store,
		      store_lmdb_txn_func_t *func, void *context,
		      const char **func_r)
{
	MDB_txn *txn;
	int rc;

	*func_r = "mdb_txn_begin";
	rc = store_lmdb_txn_begin(store->env, TRUE, &txn);
	if (rc != 0)
		return rc;
	rc = func(store, txn, context, func_r);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	*func_r = "mdb_txn_commit";
	return store_lmdb_txn_commit(store->env, txn);
}

/* Doubles the map, up to the soft limit. */
bool store_lmdb_grow(struct store_lmdb_env *env)
{
	MDB_envinfo info;
	size_t new_size;

	if (mdb_env_info(env->env, &info) != 0 ||
	    info.me_mapsize >= env->soft_map_size)
		return FALSE;
	new_size = info.me_mapsize > env->soft_map_size / 2 ?
		env->soft_map_size : info.me_mapsize * 2;
	return mdb_env_set_mapsize(env->env, new_size) == 0;
}

/* For deletions only: maps the reserve. */
bool store_lmdb_reserve_use(struct store_lmdb_env *env)
{
	MDB_envinfo info;

	if (mdb_env_info(env->env, &info) != 0 ||
	    info.me_mapsize >= env->hard_map_size)
		return FALSE;
	return mdb_env_set_mapsize(env->env, env->hard_map_size) == 0;
}

void store_lmdb_reserve_release(struct store_lmdb_env *env)
{
	(void)mdb_env_set_mapsize(env->env, env->soft_map_size);
}

/* The error for MDB_MAP_FULL that purging and growing did not cure.
   Returns LOOPGUARD_STORE_FULL when the map is at its limit, else -1.
   grow_note is added when the map may still grow. */
int
store_lmdb_map_full_error(struct store_lmdb *store, const char *func_name,
			  const char *grow_note, const char **error_r)
{
	MDB_envinfo info;
	bool at_limit;

	if (mdb_env_info(store->env->env, &info) != 0)
		info.me_mapsize = 0;
	/* Below the limit the map could not grow (address space?), or one
	   retry was not enough: the next try may succeed. */
	at_limit = info.me_mapsize >= store->env->soft_map_size;
	*error_r = t_strdup_printf(
		"loopguard store %s: %s failed: %s (map size %zu, limit %zu, "
		"even after purging expired records%s)",
		store->env->path, func_name, mdb_strerror(MDB_MAP_FULL),
		info.me_mapsize, store->env->hard_map_size,
		at_limit ? ": the store is full of live records" : grow_note);
	return at_limit ? LOOPGUARD_STORE_FULL : -1;
}

int
store_lmdb_write(struct store_lmdb *store, time_t now, bool deletes_only,
		 store_lmdb_txn_func_t *func, void *context,
		 const char **error_r)
{
	const char *func_name;
	bool retried = FALSE, reserved = FALSE;
	int rc;

	if (store->env->delivery != NULL)
		return store_lmdb_delivery_write(store, now, func, context,
						 error_r);
	for (;;) {
		rc = store_lmdb_write_once(store, func, context, &func_name);
		if (rc != MDB_MAP_FULL)
			break;
		if (!retried) {
			retried = TRUE;
			rc = store_lmdb_make_room(store, now, &func_name);
			if (rc == 0)
				continue;
			if (rc != MDB_MAP_FULL)
				break;
		}
		if (!deletes_only || reserved ||
		    !store_lmdb_reserve_use(store->env))
			break;
		reserved = TRUE;
	}
	if (reserved)
		store_lmdb_reserve_release(store->env);
	if (rc == 0)
		return 0;
	if (rc == MDB_MAP_FULL)
		return store_lmdb_map_full_error(store, func_name, "", error_r);
	*error_r = store_lmdb_failed(store->env, func_name, rc);
	return -1;
}

void
store_lmdb_map_sizes_get(uoff_t max_size,
			 struct store_lmdb_map_sizes *sizes_r)
{
	size_t hard, reserve;

	hard = max_size > SIZE_MAX ? SIZE_MAX : (size_t)max_size;
	hard = store_lmdb_round_to_page(I_MAX(hard,
						STORE_LMDB_MIN_MAP_SIZE));
	reserve = I_MAX(hard / STORE_LMDB_RESERVE_DIVISOR,
			STORE_LMDB_RESERVE_MIN_PAGES *
			store_lmdb_page_size());
	sizes_r->hard = hard;
	sizes_r->soft = store_lmdb_round_to_page(hard - reserve);
	sizes_r->initial = I_MIN(sizes_r->soft,
				 STORE_LMDB_INITIAL_MAP_SIZE);
}

