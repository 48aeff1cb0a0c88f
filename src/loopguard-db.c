/* The per-user LMDB store: expiring records and a capped event log. */

#include "lib.h"
#include "buffer.h"
#include "str.h"
#include "strescape.h"
#include "strnum.h"
#include "byteorder.h"
#include "llist.h"
#include "sha2.h"
#include "loopguard-db.h"

#include <stdio.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <lmdb.h>

#define LOOPGUARD_DB_RECORD_VERSION 1
#define LOOPGUARD_DB_LOG_VERSION 1
/* version byte, expires, handle length */
#define LOOPGUARD_DB_RECORD_HEADER_SIZE (1 + 8 + 2)
#define LOOPGUARD_DB_LOG_KEY_SIZE 8
#define LOOPGUARD_DB_LOG_FIELD_COUNT 9
/* Stored instead of handle+key when kind+handle+key is longer than LMDB's
   key limit: kind byte, this mark, SHA-256 of the whole readable key. */
#define LOOPGUARD_DB_HASHED_KEY_MARK '#'

/* The map only reserves address space (no MDB_WRITEMAP), and the file grows
   page by page whatever its size. Starting small keeps the address space
   of a process that opens many users' stores (doveadm -A) modest; a store
   that needs more doubles its map on MDB_MAP_FULL. */
#define LOOPGUARD_DB_INITIAL_MAP_SIZE (1024 * 1024)
/* Room for the meta pages, the three named databases, some records and
   the reserve. */
#define LOOPGUARD_DB_MIN_MAP_SIZE (128 * 1024)
/* The top 1/16 of max_size (at least this many pages) is kept free for
   deletions: in a map that is completely full even a delete fails, since
   LMDB copies every page it changes, and a store that can no longer drop
   its expired records would stay full for good. */
#define LOOPGUARD_DB_RESERVE_DIVISOR 16
#define LOOPGUARD_DB_RESERVE_MIN_PAGES 16

/* Records examined per update by the incremental sweep. */
#define LOOPGUARD_DB_SWEEP_COUNT 16
/* Records examined / deleted per transaction by a full purge. */
#define LOOPGUARD_DB_PURGE_SCAN_COUNT 1024
#define LOOPGUARD_DB_PURGE_DELETE_COUNT 256
#define LOOPGUARD_DB_MAX_RESIZE_RETRIES 3

#define LOOPGUARD_DB_META_SWEEP "sweep"

/* One per data file and process, shared by all handles of that file. */
struct loopguard_db_env {
	struct loopguard_db_env *prev, *next;

	char *path;
	MDB_env *env;
	MDB_dbi records_dbi, log_dbi, meta_dbi;
	pid_t pid;
	unsigned int refcount;
	size_t max_key_size;
	/* Ordinary writes grow the map up to soft_map_size; deletions may
	   use the reserve up to hard_map_size (max_size). The first open
	   in the process sets them. */
	size_t soft_map_size, hard_map_size;

	/* Listed in loopguard_db_envs, so that opens of the path share it. */
	bool registered:1;
	/* inherited over fork(): on loopguard_db_inherited_envs */
	bool inherited:1;
	/* The data file was moved aside; only closing is left to do. */
	bool broken:1;

	/* What the environment was opened for, so that an idle one is
	   reused only for the same file and limits. */
	dev_t dev;
	ino_t ino;
	uoff_t max_size;
};

/* Environments without handles are kept open for the next delivery of the
   same user in this process, up to this many, and only while their map is
   small: mapped address space counts against the process's vsz_limit. */
#define LOOPGUARD_DB_MAX_IDLE_ENVS 2
#define LOOPGUARD_DB_MAX_IDLE_MAP_SIZE (16 * 1024 * 1024)
static bool loopguard_db_idle_allowed = FALSE;

struct loopguard_db {
	struct loopguard_db_env *env;
	unsigned int log_size;
};

/* Runs inside a write transaction. Returns 0 or an MDB error code, with
   *func_r naming the call that failed. */
typedef int
loopguard_db_txn_func_t(struct loopguard_db *db, MDB_txn *txn, void *context,
			const char **func_r);

static struct loopguard_db_env *loopguard_db_envs = NULL;
/* environments inherited over fork(), never used again */
static struct loopguard_db_env *loopguard_db_inherited_envs = NULL;

static int
loopguard_db_purge_expired(struct loopguard_db *db, time_t now,
			   unsigned int *purged_r, const char **func_r);

static size_t loopguard_db_page_size(void)
{
	long page_size = sysconf(_SC_PAGESIZE);

	return page_size > 0 ? (size_t)page_size : 4096;
}

static size_t loopguard_db_round_to_page(size_t size)
{
	size_t page_size = loopguard_db_page_size();

	return size - size % page_size;
}

/*
 * Environment registry
 */

static struct loopguard_db_env *loopguard_db_env_find(const char *path)
{
	struct loopguard_db_env *env;

	for (env = loopguard_db_envs; env != NULL; env = env->next) {
		if (strcmp(env->path, path) == 0)
			return env;
	}
	return NULL;
}

static void loopguard_db_env_unregister(struct loopguard_db_env *env)
{
	if (!env->registered)
		return;
	DLLIST_REMOVE(&loopguard_db_envs, env);
	env->registered = FALSE;
}

/* An environment inherited over fork() is never closed: mdb_env_close()
   would release the parent's reader slots. It stays listed, unused, so that
   the parent's memory is not taken for a leak; its mapping and descriptors
   go away with this process. */
static void loopguard_db_env_keep_inherited(struct loopguard_db_env *env)
{
	if (env->inherited)
		return;
	loopguard_db_env_unregister(env);
	DLLIST_PREPEND(&loopguard_db_inherited_envs, env);
	env->inherited = TRUE;
}

static void loopguard_db_env_free(struct loopguard_db_env **_env)
{
	struct loopguard_db_env *env = *_env;

	*_env = NULL;
	i_assert(env->refcount == 0);

	if (env->pid != getpid()) {
		loopguard_db_env_keep_inherited(env);
		return;
	}
	loopguard_db_env_unregister(env);
	mdb_env_close(env->env);
	i_free(env->path);
	i_free(env);
}

/*
 * Errors
 */

static const char *
loopguard_db_mdb_error(const char *path, const char *func, int rc)
{
	return t_strdup_printf("loopguard db %s: %s failed: %s",
			       path, func, mdb_strerror(rc));
}

static bool loopguard_db_rc_is_corruption(int rc)
{
	return rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH ||
		rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND;
}

/* Moves a data file LMDB cannot use out of the way, so that the next open
   starts a fresh store instead of failing (or crashing) on it forever. */
static const char *
loopguard_db_move_aside(const char *path, const char *reason)
{
	const char *broken_path = t_strconcat(path, ".broken", NULL);
	const char *lock_path = t_strconcat(path, "-lock", NULL);
	const char *lock_error = "";

	if (rename(path, broken_path) < 0 && errno != ENOENT) {
		return t_strdup_printf("loopguard db %s: %s; "
				       "rename(%s) failed: %m",
				       path, reason, broken_path);
	}
	/* The lock file belongs to the old data file; a fresh one is made
	   along with the fresh store. */
	if (unlink(lock_path) < 0 && errno != ENOENT) {
		lock_error = t_strdup_printf(" (unlink(%s) failed: %m)",
					     lock_path);
	}
	return t_strdup_printf("loopguard db %s: %s; moved it to %s, "
			       "the next open starts a fresh store%s",
			       path, reason, broken_path, lock_error);
}

/* Turns a failed MDB call into an error string, and takes the file out of
   use when the failure says it is damaged. */
static const char *
loopguard_db_failed(struct loopguard_db_env *env, const char *func, int rc)
{
	const char *error;

	if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND) {
		error = loopguard_db_move_aside(env->path,
			t_strdup_printf("%s failed: %s", func,
					mdb_strerror(rc)));
		/* Other handles of this env fail from now on; the next open
		   of the path gets a fresh env on the fresh file. */
		env->broken = TRUE;
		loopguard_db_env_unregister(env);
		return error;
	}
	if (rc == MDB_PANIC) {
		/* LMDB wants this env shut down; the file itself may be
		   fine, so it stays where it is. */
		env->broken = TRUE;
		loopguard_db_env_unregister(env);
	}
	return loopguard_db_mdb_error(env->path, func, rc);
}

static int loopguard_db_check(struct loopguard_db *db, const char **error_r)
{
	if (db->env->pid != getpid()) {
		*error_r = t_strdup_printf(
			"loopguard db %s: handle opened before fork() "
			"used in the child", db->env->path);
		return -1;
	}
	if (db->env->broken) {
		*error_r = t_strdup_printf(
			"loopguard db %s: the store failed and was closed; "
			"open it again", db->env->path);
		return -1;
	}
	return 0;
}

/*
 * Transactions
 */

/* Adopts the map size stored in the file by the last writer, but not the
   reserve: a process that had to use it for a purge stores its larger
   size, and the others must not take that for ordinary room. LMDB never
   maps less than the space in use. */
static int loopguard_db_map_adopt(struct loopguard_db_env *env)
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

static int
loopguard_db_txn_begin(struct loopguard_db_env *env, bool write,
		       MDB_txn **txn_r)
{
	unsigned int i;
	int rc;

	for (i = 0;; i++) {
		rc = mdb_txn_begin(env->env, NULL, write ? 0 : MDB_RDONLY,
				   txn_r);
		if (rc != MDB_MAP_RESIZED ||
		    i == LOOPGUARD_DB_MAX_RESIZE_RETRIES)
			return rc;
		/* Another process grew the map past ours. No transaction of
		   ours is active here, so adopting its size is allowed. */
		rc = loopguard_db_map_adopt(env);
		if (rc != 0)
			return rc;
	}
}

static int
loopguard_db_write_once(struct loopguard_db *db,
			loopguard_db_txn_func_t *func, void *context,
			const char **func_r)
{
	MDB_txn *txn;
	int rc;

	*func_r = "mdb_txn_begin";
	rc = loopguard_db_txn_begin(db->env, TRUE, &txn);
	if (rc != 0)
		return rc;
	rc = func(db, txn, context, func_r);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	*func_r = "mdb_txn_commit";
	/* A failed commit frees the transaction too. */
	return mdb_txn_commit(txn);
}

/* Doubles the map, up to the soft limit. */
static bool loopguard_db_grow(struct loopguard_db_env *env)
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
static bool loopguard_db_reserve_use(struct loopguard_db_env *env)
{
	MDB_envinfo info;

	if (mdb_env_info(env->env, &info) != 0 ||
	    info.me_mapsize >= env->hard_map_size)
		return FALSE;
	return mdb_env_set_mapsize(env->env, env->hard_map_size) == 0;
}

static void loopguard_db_reserve_release(struct loopguard_db_env *env)
{
	(void)mdb_env_set_mapsize(env->env, env->soft_map_size);
}

/* After MDB_MAP_FULL: frees what has expired, then grows the map. Returns
   0 when the retry has a chance, MDB_MAP_FULL when it has none, or another
   MDB error. */
static int
loopguard_db_make_room(struct loopguard_db *db, time_t now,
		       const char **func_r)
{
	unsigned int purged;
	bool grew;
	int rc;

	rc = loopguard_db_purge_expired(db, now, &purged, func_r);
	if (rc != 0 && rc != MDB_MAP_FULL)
		return rc;
	grew = loopguard_db_grow(db->env);
	return purged > 0 || grew ? 0 : MDB_MAP_FULL;
}

/* A write transaction with the map handling: MDB_MAP_RESIZED adopts the
   new size, MDB_MAP_FULL purges, grows and retries once. A func that only
   deletes may then also use the reserve. func may run more than once, so
   it must not have side effects outside the transaction. */
static int
loopguard_db_write(struct loopguard_db *db, time_t now, bool deletes_only,
		   loopguard_db_txn_func_t *func, void *context,
		   const char **error_r)
{
	const char *func_name;
	bool retried = FALSE, reserved = FALSE;
	int rc;

	for (;;) {
		rc = loopguard_db_write_once(db, func, context, &func_name);
		if (rc != MDB_MAP_FULL)
			break;
		if (!retried) {
			retried = TRUE;
			rc = loopguard_db_make_room(db, now, &func_name);
			if (rc == 0)
				continue;
			if (rc != MDB_MAP_FULL)
				break;
		}
		if (!deletes_only || reserved ||
		    !loopguard_db_reserve_use(db->env))
			break;
		reserved = TRUE;
	}
	if (reserved)
		loopguard_db_reserve_release(db->env);
	if (rc == 0)
		return 0;
	if (rc == MDB_MAP_FULL) {
		MDB_envinfo info;

		if (mdb_env_info(db->env->env, &info) != 0)
			info.me_mapsize = 0;
		*error_r = t_strdup_printf(
			"loopguard db %s: %s failed: %s (map size %zu, "
			"limit %zu, even after purging expired records)",
			db->env->path, func_name, mdb_strerror(rc),
			info.me_mapsize, db->env->hard_map_size);
		return -1;
	}
	*error_r = loopguard_db_failed(db->env, func_name, rc);
	return -1;
}

/*
 * Keys and values
 */

/* kind + handle + NUL + key, or kind + '#' + SHA-256 of that when it does
   not fit into an LMDB key. */
static void
loopguard_db_key_build(const struct loopguard_db_env *env,
		       unsigned char kind,
		       const void *handle, size_t handle_size,
		       const void *key, size_t key_size, buffer_t *dest)
{
	unsigned char digest[SHA256_RESULTLEN];

	buffer_set_used_size(dest, 0);
	buffer_append_c(dest, kind);
	buffer_append(dest, handle, handle_size);
	buffer_append_c(dest, '\0');
	buffer_append(dest, key, key_size);
	if (dest->used <= env->max_key_size)
		return;

	sha256_get_digest(dest->data, dest->used, digest);
	buffer_set_used_size(dest, 0);
	buffer_append_c(dest, kind);
	buffer_append_c(dest, LOOPGUARD_DB_HASHED_KEY_MARK);
	buffer_append(dest, digest, sizeof(digest));
}

static void
loopguard_db_value_build(const char *handle, const char *key,
			 time_t expires, const buffer_t *payload,
			 buffer_t *dest)
{
	size_t handle_len = strlen(handle), key_len = strlen(key);
	unsigned char *p;

	i_assert(handle_len <= (uint16_t)-1);
	i_assert(key_len <= (uint32_t)-1);

	buffer_set_used_size(dest, 0);
	p = buffer_append_space_unsafe(dest, LOOPGUARD_DB_RECORD_HEADER_SIZE);
	p[0] = LOOPGUARD_DB_RECORD_VERSION;
	cpu64_to_be_unaligned((uint64_t)(int64_t)expires, p + 1);
	cpu16_to_be_unaligned((uint16_t)handle_len, p + 9);
	buffer_append(dest, handle, handle_len);
	p = buffer_append_space_unsafe(dest, 4);
	cpu32_to_be_unaligned((uint32_t)key_len, p);
	buffer_append(dest, key, key_len);
	buffer_append_buf(dest, payload, 0, SIZE_MAX);
}

/* Parses a stored record. Strings are allocated from the data stack, the
   payload points into the map and is valid only inside the transaction.
   Returns FALSE with the reason when the value is not one we can trust. */
static bool
loopguard_db_record_parse(const struct loopguard_db_env *env,
			  const MDB_val *k, const MDB_val *v,
			  struct loopguard_db_record *record_r,
			  const char **error_r)
{
	const unsigned char *p = v->mv_data;
	const unsigned char *handle, *key;
	size_t size = v->mv_size, pos, handle_len, key_len;
	buffer_t *expected;

	i_zero(record_r);
	if (size < LOOPGUARD_DB_RECORD_HEADER_SIZE) {
		*error_r = t_strdup_printf("value too short (%zu bytes)",
					   size);
		return FALSE;
	}
	if (p[0] != LOOPGUARD_DB_RECORD_VERSION) {
		*error_r = t_strdup_printf("unknown version %u", p[0]);
		return FALSE;
	}
	handle_len = be16_to_cpu_unaligned(p + 9);
	pos = LOOPGUARD_DB_RECORD_HEADER_SIZE;
	if (size - pos < handle_len + 4) {
		*error_r = "handle length exceeds the value";
		return FALSE;
	}
	handle = p + pos;
	pos += handle_len;
	key_len = be32_to_cpu_unaligned(p + pos);
	pos += 4;
	if (size - pos < key_len) {
		*error_r = "key length exceeds the value";
		return FALSE;
	}
	key = p + pos;
	pos += key_len;
	if (memchr(handle, '\0', handle_len) != NULL ||
	    memchr(key, '\0', key_len) != NULL) {
		*error_r = "NUL in handle or key";
		return FALSE;
	}
	if (k->mv_size < 2) {
		*error_r = "stored key too short";
		return FALSE;
	}

	/* The value must be the one its key was made from; this also keeps
	   a hash collision from handing one key's record to another. */
	expected = t_buffer_create(k->mv_size + 32);
	loopguard_db_key_build(env, ((const unsigned char *)k->mv_data)[0],
			       handle, handle_len, key, key_len, expected);
	if (expected->used != k->mv_size ||
	    memcmp(expected->data, k->mv_data, k->mv_size) != 0) {
		*error_r = "value does not belong to its key";
		return FALSE;
	}

	record_r->kind = ((const unsigned char *)k->mv_data)[0];
	record_r->handle = t_strndup(handle, handle_len);
	record_r->key = t_strndup(key, key_len);
	record_r->expires = (time_t)(int64_t)be64_to_cpu_unaligned(p + 1);
	record_r->payload = p + pos;
	record_r->payload_size = size - pos;
	return TRUE;
}

/* The live record stored under k for kind/handle/key, if any. Unreadable
   values are logged and treated as absent. */
static bool
loopguard_db_record_get(const struct loopguard_db_env *env,
			const MDB_val *k, const MDB_val *v,
			const char *handle, const char *key, time_t now,
			struct loopguard_db_record *record_r)
{
	const char *error;

	if (!loopguard_db_record_parse(env, k, v, record_r, &error)) {
		i_warning("loopguard db %s: ignoring unreadable record "
			  "(handle %s): %s", env->path, handle, error);
		return FALSE;
	}
	if (strcmp(record_r->handle, handle) != 0 ||
	    strcmp(record_r->key, key) != 0) {
		/* only a SHA-256 collision gets here */
		return FALSE;
	}
	return record_r->expires > now;
}

/* Whether the sweep and purge drop the record: expired, or not readable
   (a value we cannot parse is of no use and is never trusted). */
static bool
loopguard_db_record_is_dead(const struct loopguard_db_env *env,
			    const MDB_val *k, const MDB_val *v, time_t now)
{
	struct loopguard_db_record record;
	const char *error;
	bool dead;

	T_BEGIN {
		if (!loopguard_db_record_parse(env, k, v, &record, &error)) {
			i_warning("loopguard db %s: dropping unreadable "
				  "record: %s", env->path, error);
			dead = TRUE;
		} else {
			dead = record.expires <= now;
		}
	} T_END;
	return dead;
}

static void loopguard_db_keylist_add(buffer_t *list, const MDB_val *k)
{
	uint32_t size = k->mv_size;

	buffer_append(list, &size, sizeof(size));
	buffer_append(list, k->mv_data, k->mv_size);
}

/* Deletes the keys collected by loopguard_db_keylist_add(). */
static int
loopguard_db_keylist_delete(MDB_txn *txn, MDB_dbi dbi, const buffer_t *list,
			    const char **func_r)
{
	const unsigned char *p = list->data, *end = p + list->used;
	uint32_t size;
	MDB_val k;
	int rc;

	while (p < end) {
		memcpy(&size, p, sizeof(size));
		k.mv_size = size;
		k.mv_data = (void *)(p + sizeof(size));
		p += sizeof(size) + size;
		rc = mdb_del(txn, dbi, &k, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			*func_r = "mdb_del";
			return rc;
		}
	}
	return 0;
}

/*
 * Open and close
 */

/* A data file shorter than its own meta page claims (truncated, or a
   partial copy) would SIGBUS on first access through the map, so this runs
   before anything reads a data page. */
static int
loopguard_db_env_check_size(MDB_env *mdb, const char *path,
			    const char **reason_r)
{
	MDB_envinfo info;
	MDB_stat stat;
	struct stat st;
	int fd, rc;

	if ((rc = mdb_env_get_fd(mdb, &fd)) != 0 ||
	    (rc = mdb_env_info(mdb, &info)) != 0 ||
	    (rc = mdb_env_stat(mdb, &stat)) != 0) {
		*reason_r = loopguard_db_mdb_error(path, "mdb_env_info", rc);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		*reason_r = t_strdup_printf("loopguard db %s: fstat() failed: %m",
					    path);
		return -1;
	}
	if ((uoff_t)st.st_size / stat.ms_psize < info.me_last_pgno + 1) {
		*reason_r = t_strdup_printf(
			"file is truncated (%"PRIuUOFF_T" bytes, its meta page "
			"says %zu pages of %u bytes)", (uoff_t)st.st_size,
			info.me_last_pgno + 1, stat.ms_psize);
		return 0;
	}
	*reason_r = NULL;
	return 0;
}

static int
loopguard_db_env_open_dbis(struct loopguard_db_env *env, const char **error_r)
{
	const char *func = "mdb_txn_begin";
	MDB_txn *txn;
	int rc;

	rc = loopguard_db_txn_begin(env, TRUE, &txn);
	if (rc == 0) {
		func = "mdb_dbi_open";
		if ((rc = mdb_dbi_open(txn, "records", MDB_CREATE,
				       &env->records_dbi)) != 0 ||
		    (rc = mdb_dbi_open(txn, "log", MDB_CREATE,
				       &env->log_dbi)) != 0 ||
		    (rc = mdb_dbi_open(txn, "meta", MDB_CREATE,
				       &env->meta_dbi)) != 0)
			mdb_txn_abort(txn);
		else {
			func = "mdb_txn_commit";
			rc = mdb_txn_commit(txn);
		}
	}
	if (rc != 0) {
		*error_r = loopguard_db_failed(env, func, rc);
		return -1;
	}
	return 0;
}

static int
loopguard_db_env_open(const struct loopguard_db_settings *set,
		      struct loopguard_db_env **env_r, const char **error_r)
{
	struct loopguard_db_env *env;
	unsigned int flags = MDB_NOSUBDIR | MDB_NOTLS;
	size_t hard_size, soft_size, reserve, initial_size;
	const char *reason;
	MDB_env *mdb;
	struct stat st;
	mdb_filehandle_t fd;
	int rc, dead;

	hard_size = set->max_size > SIZE_MAX ? SIZE_MAX :
		(size_t)set->max_size;
	hard_size = loopguard_db_round_to_page(I_MAX(hard_size,
		LOOPGUARD_DB_MIN_MAP_SIZE));
	reserve = I_MAX(hard_size / LOOPGUARD_DB_RESERVE_DIVISOR,
			LOOPGUARD_DB_RESERVE_MIN_PAGES *
			loopguard_db_page_size());
	soft_size = loopguard_db_round_to_page(hard_size - reserve);
	initial_size = I_MIN(soft_size, LOOPGUARD_DB_INITIAL_MAP_SIZE);

	/* MDB_NOSYNC would keep the file intact only on filesystems that
	   preserve write order; MDB_NOMETASYNC keeps it intact everywhere
	   and only risks losing the last commit in a system crash. */
	if (!set->sync)
		flags |= MDB_NOMETASYNC;

	if ((rc = mdb_env_create(&mdb)) != 0) {
		*error_r = loopguard_db_mdb_error(set->path,
						  "mdb_env_create", rc);
		return -1;
	}
	if ((rc = mdb_env_set_maxdbs(mdb, 3)) != 0 ||
	    (rc = mdb_env_set_mapsize(mdb, initial_size)) != 0) {
		mdb_env_close(mdb);
		*error_r = loopguard_db_mdb_error(set->path,
						  "mdb_env_set_mapsize", rc);
		return -1;
	}
	rc = mdb_env_open(mdb, set->path, flags, 0600);
	if (rc != 0) {
		mdb_env_close(mdb);
		if (loopguard_db_rc_is_corruption(rc)) {
			*error_r = loopguard_db_move_aside(set->path,
				t_strdup_printf("not a usable LMDB file: %s",
						mdb_strerror(rc)));
		} else {
			*error_r = loopguard_db_mdb_error(set->path,
							  "mdb_env_open", rc);
		}
		return -1;
	}
	if (loopguard_db_env_check_size(mdb, set->path, &reason) < 0) {
		mdb_env_close(mdb);
		*error_r = reason;
		return -1;
	}
	if (reason != NULL) {
		mdb_env_close(mdb);
		*error_r = loopguard_db_move_aside(set->path, reason);
		return -1;
	}
	/* Slots left behind by crashed deliveries would pin old pages
	   forever and make the file grow. */
	(void)mdb_reader_check(mdb, &dead);

	env = i_new(struct loopguard_db_env, 1);
	env->path = i_strdup(set->path);
	env->env = mdb;
	env->pid = getpid();
	env->max_size = set->max_size;
	if (mdb_env_get_fd(mdb, &fd) == 0 && fstat(fd, &st) == 0) {
		env->dev = st.st_dev;
		env->ino = st.st_ino;
	}
	env->max_key_size = mdb_env_get_maxkeysize(mdb);
	env->soft_map_size = soft_size;
	env->hard_map_size = hard_size;

	/* A user whose store has grown keeps its size, instead of going
	   through the growth steps again in every process. */
	if ((rc = loopguard_db_map_adopt(env)) != 0) {
		*error_r = loopguard_db_mdb_error(set->path,
						  "mdb_env_set_mapsize", rc);
		loopguard_db_env_free(&env);
		return -1;
	}
	if (loopguard_db_env_open_dbis(env, error_r) < 0) {
		loopguard_db_env_free(&env);
		return -1;
	}
	*env_r = env;
	return 0;
}

/* An idle environment serves a new open only when the path still names the
   file it has open (not moved aside or replaced) and the limits agree. */
static bool
loopguard_db_env_reusable(const struct loopguard_db_env *env,
			  const struct loopguard_db_settings *set)
{
	struct stat st;

	if (env->max_size != set->max_size)
		return FALSE;
	if (stat(set->path, &st) < 0)
		return FALSE;
	return st.st_dev == env->dev && st.st_ino == env->ino;
}

/* Keeps an environment without handles open, most recently used first,
   and closes the least recently used beyond LOOPGUARD_DB_MAX_IDLE_ENVS:
   opening a store costs more than the check it serves. */
static void loopguard_db_env_keep_idle(struct loopguard_db_env *env)
{
	struct loopguard_db_env *e, *last_idle = NULL;
	unsigned int idle = 0;

	DLLIST_REMOVE(&loopguard_db_envs, env);
	DLLIST_PREPEND(&loopguard_db_envs, env);
	for (e = loopguard_db_envs; e != NULL; e = e->next) {
		if (e->refcount == 0) {
			idle++;
			last_idle = e;
		}
	}
	if (idle > LOOPGUARD_DB_MAX_IDLE_ENVS)
		loopguard_db_env_free(&last_idle);
}

void loopguard_db_keep_idle(bool keep)
{
	struct loopguard_db_env *env, *next;

	loopguard_db_idle_allowed = keep;
	if (keep)
		return;
	for (env = loopguard_db_envs; env != NULL; env = next) {
		next = env->next;
		if (env->refcount == 0)
			loopguard_db_env_free(&env);
	}
}

int loopguard_db_open(const struct loopguard_db_settings *set,
		      struct loopguard_db **db_r, const char **error_r)
{
	struct loopguard_db_env *env;
	struct loopguard_db *db;
	unsigned int flags;

	*db_r = NULL;
	if (set->path == NULL || set->path[0] != '/') {
		*error_r = t_strdup_printf(
			"loopguard db %s: path is not absolute",
			set->path == NULL ? "(null)" : set->path);
		return -1;
	}

	env = loopguard_db_env_find(set->path);
	if (env != NULL && env->pid != getpid()) {
		/* Inherited over fork(): its locks and reader slots are the
		   parent's. Leave it alone and open our own, but keep it
		   reachable: it is the parent's memory, not a leak. */
		loopguard_db_env_keep_inherited(env);
		env = NULL;
	}
	if (env != NULL && env->refcount == 0 &&
	    !loopguard_db_env_reusable(env, set)) {
		loopguard_db_env_free(&env);
		env = NULL;
	}
	if (env == NULL) {
		if (loopguard_db_env_open(set, &env, error_r) < 0)
			return -1;
		DLLIST_PREPEND(&loopguard_db_envs, env);
		env->registered = TRUE;
	} else if (env->refcount == 0) {
		/* an idle environment takes this open's durability */
		(void)mdb_env_set_flags(env->env, MDB_NOMETASYNC,
					set->sync ? 0 : 1);
	} else if (set->sync &&
		   mdb_env_get_flags(env->env, &flags) == 0 &&
		   (flags & MDB_NOMETASYNC) != 0) {
		/* one handle asking for durability gets it for all */
		(void)mdb_env_set_flags(env->env, MDB_NOMETASYNC, 0);
	}
	env->refcount++;

	db = i_new(struct loopguard_db, 1);
	db->env = env;
	db->log_size = set->log_size;
	*db_r = db;
	return 0;
}

void loopguard_db_close(struct loopguard_db **_db)
{
	struct loopguard_db *db = *_db;
	struct loopguard_db_env *env;
	MDB_envinfo info;

	if (db == NULL)
		return;
	*_db = NULL;

	env = db->env;
	i_free(db);
	i_assert(env->refcount > 0);
	if (--env->refcount > 0)
		return;
	if (!loopguard_db_idle_allowed || env->broken ||
	    env->pid != getpid() || !env->registered ||
	    mdb_env_info(env->env, &info) != 0 ||
	    info.me_mapsize > LOOPGUARD_DB_MAX_IDLE_MAP_SIZE)
		loopguard_db_env_free(&env);
	else
		loopguard_db_env_keep_idle(env);
}

/*
 * Records
 */

struct loopguard_db_update_context {
	const char *handle, *key;
	time_t now;
	const buffer_t *db_key;
	loopguard_db_update_callback_t *callback;
	void *context;
	buffer_t *payload, *value;
};

/* Examines a bounded number of records from where the previous sweep
   stopped and deletes the dead ones, so that the store stays small
   without any cron job while each delivery's work stays bounded. */
static int
loopguard_db_sweep(struct loopguard_db *db, MDB_txn *txn, time_t now,
		   const char **func_r)
{
	struct loopguard_db_env *env = db->env;
	MDB_val mk, mv, k, v;
	MDB_cursor *cursor;
	buffer_t *dead, *next_key;
	unsigned int i;
	int rc;

	mk.mv_data = LOOPGUARD_DB_META_SWEEP;
	mk.mv_size = strlen(LOOPGUARD_DB_META_SWEEP);
	rc = mdb_get(txn, env->meta_dbi, &mk, &mv);
	if (rc == MDB_NOTFOUND)
		mv.mv_size = 0;
	else if (rc != 0) {
		*func_r = "mdb_get";
		return rc;
	}

	*func_r = "mdb_cursor_open";
	if ((rc = mdb_cursor_open(txn, env->records_dbi, &cursor)) != 0)
		return rc;
	if (mv.mv_size > 0) {
		k = mv;
		rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
	}

	dead = t_buffer_create(256);
	next_key = t_buffer_create(64);
	for (i = 0; rc == 0; i++) {
		if (i == LOOPGUARD_DB_SWEEP_COUNT) {
			buffer_append(next_key, k.mv_data, k.mv_size);
			break;
		}
		if (loopguard_db_record_is_dead(env, &k, &v, now))
			loopguard_db_keylist_add(dead, &k);
		rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cursor);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		*func_r = "mdb_cursor_get";
		return rc;
	}

	if ((rc = loopguard_db_keylist_delete(txn, env->records_dbi,
					      dead, func_r)) != 0)
		return rc;
	/* An empty position wraps around to the first record. */
	mv.mv_data = (void *)next_key->data;
	mv.mv_size = next_key->used;
	*func_r = "mdb_put";
	return mdb_put(txn, env->meta_dbi, &mk, &mv, 0);
}

static int
loopguard_db_update_txn(struct loopguard_db *db, MDB_txn *txn, void *context,
			const char **func_r)
{
	struct loopguard_db_update_context *ctx = context;
	struct loopguard_db_env *env = db->env;
	struct loopguard_db_record old;
	const struct loopguard_db_record *oldp = NULL;
	MDB_val k, v;
	bool stored, keep;
	time_t expires = 0;
	int rc;

	k.mv_data = (void *)ctx->db_key->data;
	k.mv_size = ctx->db_key->used;
	rc = mdb_get(txn, env->records_dbi, &k, &v);
	if (rc == 0) {
		if (loopguard_db_record_get(env, &k, &v, ctx->handle,
					    ctx->key, ctx->now, &old))
			oldp = &old;
	} else if (rc != MDB_NOTFOUND) {
		*func_r = "mdb_get";
		return rc;
	}
	stored = rc == 0;

	/* this may be a retry after MDB_MAP_FULL */
	buffer_set_used_size(ctx->payload, 0);
	keep = ctx->callback(oldp, ctx->now, ctx->payload, &expires,
			     ctx->context);
	if (keep && expires > ctx->now) {
		loopguard_db_value_build(ctx->handle, ctx->key, expires,
					 ctx->payload, ctx->value);
		v.mv_data = (void *)ctx->value->data;
		v.mv_size = ctx->value->used;
		*func_r = "mdb_put";
		if ((rc = mdb_put(txn, env->records_dbi, &k, &v, 0)) != 0)
			return rc;
	} else if (stored && (keep || oldp == NULL)) {
		/* Either a deletion, or the callback left alone a record
		   nobody can see anyway (expired or unreadable): drop that
		   now rather than waiting for the sweep. */
		*func_r = "mdb_del";
		rc = mdb_del(txn, env->records_dbi, &k, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return rc;
	}
	return loopguard_db_sweep(db, txn, ctx->now, func_r);
}

/* The callback runs inside the write transaction, so it must be quick and
   must not call back into the store. It is called again when MDB_MAP_FULL
   forces a retry, so it must not have side effects besides filling in
   new_payload and *expires_r (and the context, idempotently). old and its
   strings are valid only during the call. */
int loopguard_db_update(struct loopguard_db *db, enum loopguard_db_kind kind,
			const char *handle, const char *key, time_t now,
			loopguard_db_update_callback_t *callback,
			void *context, const char **error_r)
{
	struct loopguard_db_update_context ctx;
	buffer_t *db_key;

	if (loopguard_db_check(db, error_r) < 0)
		return -1;
	if (strlen(handle) > (uint16_t)-1) {
		*error_r = t_strdup_printf("loopguard db %s: handle too long",
					   db->env->path);
		return -1;
	}

	/* No T_BEGIN here: the callback may allocate from the caller's data
	   stack frame. The temporary allocations are small. */
	i_zero(&ctx);
	ctx.handle = handle;
	ctx.key = key;
	ctx.now = now;
	ctx.callback = callback;
	ctx.context = context;
	ctx.payload = t_buffer_create(128);
	ctx.value = t_buffer_create(256);
	db_key = t_buffer_create(128);
	loopguard_db_key_build(db->env, kind, handle, strlen(handle),
			       key, strlen(key), db_key);
	ctx.db_key = db_key;
	return loopguard_db_write(db, now, FALSE, loopguard_db_update_txn,
				  &ctx, error_r);
}

int loopguard_db_lookup(struct loopguard_db *db, enum loopguard_db_kind kind,
			const char *handle, const char *key, time_t now,
			pool_t pool, struct loopguard_db_record *record_r,
			const char **error_r)
{
	struct loopguard_db_env *env = db->env;
	struct loopguard_db_record record;
	const char *func = "mdb_txn_begin";
	MDB_txn *txn;
	MDB_val k, v;
	buffer_t *db_key;
	int rc, ret = 0;

	i_zero(record_r);
	if (loopguard_db_check(db, error_r) < 0)
		return -1;

	/* No T_BEGIN here: pool may be a data stack pool of the caller's
	   frame. The temporary allocations are small. */
	db_key = t_buffer_create(128);
	loopguard_db_key_build(env, kind, handle, strlen(handle),
			       key, strlen(key), db_key);
	rc = loopguard_db_txn_begin(env, FALSE, &txn);
	if (rc == 0) {
		func = "mdb_get";
		k.mv_data = (void *)db_key->data;
		k.mv_size = db_key->used;
		rc = mdb_get(txn, env->records_dbi, &k, &v);
		if (rc == 0 &&
		    loopguard_db_record_get(env, &k, &v, handle, key, now,
					    &record)) {
			record_r->kind = record.kind;
			record_r->handle = p_strdup(pool, record.handle);
			record_r->key = p_strdup(pool, record.key);
			record_r->expires = record.expires;
			record_r->payload_size = record.payload_size;
			/* the payload lives in the map only until the
			   transaction ends */
			record_r->payload =
				p_memdup(pool, record.payload,
					 I_MAX(record.payload_size, 1));
			ret = 1;
		}
		if (rc == MDB_NOTFOUND)
			rc = 0;
		mdb_txn_abort(txn);
	}
	if (rc != 0) {
		*error_r = loopguard_db_failed(env, func, rc);
		return -1;
	}
	return ret;
}

struct loopguard_db_delete_context {
	const char *handle, *key;
	const buffer_t *db_key;
	int ret;
};

static int
loopguard_db_delete_txn(struct loopguard_db *db, MDB_txn *txn, void *context,
			const char **func_r)
{
	struct loopguard_db_delete_context *ctx = context;
	struct loopguard_db_record record;
	const char *error;
	MDB_val k, v;
	int rc;

	ctx->ret = 0;
	k.mv_data = (void *)ctx->db_key->data;
	k.mv_size = ctx->db_key->used;
	*func_r = "mdb_get";
	rc = mdb_get(txn, db->env->records_dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (loopguard_db_record_parse(db->env, &k, &v, &record, &error)) {
		if (strcmp(record.handle, ctx->handle) != 0 ||
		    strcmp(record.key, ctx->key) != 0) {
			/* another key's record under a colliding hash */
			return 0;
		}
		ctx->ret = 1;
	}
	*func_r = "mdb_del";
	return mdb_del(txn, db->env->records_dbi, &k, NULL);
}

int loopguard_db_delete(struct loopguard_db *db, enum loopguard_db_kind kind,
			const char *handle, const char *key,
			const char **error_r)
{
	struct loopguard_db_delete_context ctx;
	buffer_t *db_key;
	int ret;

	if (loopguard_db_check(db, error_r) < 0)
		return -1;

	T_BEGIN {
		i_zero(&ctx);
		ctx.handle = handle;
		ctx.key = key;
		db_key = t_buffer_create(128);
		loopguard_db_key_build(db->env, kind, handle, strlen(handle),
				       key, strlen(key), db_key);
		ctx.db_key = db_key;
		ret = loopguard_db_write(db, time(NULL), TRUE,
					 loopguard_db_delete_txn, &ctx,
					 error_r);
	} T_END_PASS_STR_IF(ret < 0, error_r);
	return ret < 0 ? -1 : ctx.ret;
}

/*
 * Purge
 */

struct loopguard_db_purge_context {
	time_t now;
	unsigned int max_deletes;
	/* first record not yet examined; empty = start (or done) */
	buffer_t *resume_key, *next_key;
	buffer_t *dead;
	bool at_end;
	unsigned int purged;
};

static int
loopguard_db_purge_batch_txn(struct loopguard_db *db, MDB_txn *txn,
			     void *context, const char **func_r)
{
	struct loopguard_db_purge_context *ctx = context;
	struct loopguard_db_env *env = db->env;
	MDB_cursor *cursor;
	MDB_val k, v;
	unsigned int scanned = 0, deletes = 0;
	int rc;

	buffer_set_used_size(ctx->dead, 0);
	buffer_set_used_size(ctx->next_key, 0);
	ctx->at_end = FALSE;
	ctx->purged = 0;

	*func_r = "mdb_cursor_open";
	if ((rc = mdb_cursor_open(txn, env->records_dbi, &cursor)) != 0)
		return rc;
	if (ctx->resume_key->used > 0) {
		k.mv_data = (void *)ctx->resume_key->data;
		k.mv_size = ctx->resume_key->used;
		rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
	}
	while (rc == 0) {
		if (scanned == LOOPGUARD_DB_PURGE_SCAN_COUNT ||
		    deletes == ctx->max_deletes) {
			buffer_append(ctx->next_key, k.mv_data, k.mv_size);
			break;
		}
		scanned++;
		if (loopguard_db_record_is_dead(env, &k, &v, ctx->now)) {
			loopguard_db_keylist_add(ctx->dead, &k);
			deletes++;
		}
		rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cursor);
	if (rc == MDB_NOTFOUND) {
		ctx->at_end = TRUE;
		rc = 0;
	}
	if (rc != 0) {
		*func_r = "mdb_cursor_get";
		return rc;
	}
	ctx->purged = deletes;
	return loopguard_db_keylist_delete(txn, env->records_dbi, ctx->dead,
					   func_r);
}

/* A full pass in short transactions. When a batch of deletions does not
   fit (deleting needs fresh pages too), the batch shrinks; at a single
   record the map grows, and at the limit the reserve is used. */
static int
loopguard_db_purge_expired(struct loopguard_db *db, time_t now,
			   unsigned int *purged_r, const char **func_r)
{
	struct loopguard_db_purge_context ctx;
	bool reserved = FALSE;
	buffer_t *tmp;
	int rc;

	*purged_r = 0;
	i_zero(&ctx);
	ctx.now = now;
	ctx.max_deletes = LOOPGUARD_DB_PURGE_DELETE_COUNT;
	ctx.resume_key = buffer_create_dynamic(default_pool, 64);
	ctx.next_key = buffer_create_dynamic(default_pool, 64);
	ctx.dead = buffer_create_dynamic(default_pool, 1024);
	for (;;) {
		rc = loopguard_db_write_once(db, loopguard_db_purge_batch_txn,
					     &ctx, func_r);
		if (rc == MDB_MAP_FULL) {
			if (ctx.max_deletes > 1) {
				ctx.max_deletes /= 2;
				continue;
			}
			if (loopguard_db_grow(db->env))
				continue;
			if (!reserved && loopguard_db_reserve_use(db->env)) {
				reserved = TRUE;
				continue;
			}
		}
		if (rc != 0)
			break;
		*purged_r += ctx.purged;
		if (ctx.at_end)
			break;
		/* the pages this batch freed are there for the next one */
		if (ctx.max_deletes < LOOPGUARD_DB_PURGE_DELETE_COUNT)
			ctx.max_deletes *= 2;
		tmp = ctx.resume_key;
		ctx.resume_key = ctx.next_key;
		ctx.next_key = tmp;
	}
	if (reserved)
		loopguard_db_reserve_release(db->env);
	buffer_free(&ctx.resume_key);
	buffer_free(&ctx.next_key);
	buffer_free(&ctx.dead);
	return rc;
}

static int
loopguard_db_purge_all_txn(struct loopguard_db *db, MDB_txn *txn,
			   void *context, const char **func_r)
{
	struct loopguard_db_env *env = db->env;
	unsigned int *purged_r = context;
	MDB_stat stat;
	int rc;

	*func_r = "mdb_stat";
	if ((rc = mdb_stat(txn, env->records_dbi, &stat)) != 0)
		return rc;
	*purged_r = stat.ms_entries;
	*func_r = "mdb_drop";
	if ((rc = mdb_drop(txn, env->records_dbi, 0)) != 0 ||
	    (rc = mdb_drop(txn, env->log_dbi, 0)) != 0 ||
	    (rc = mdb_drop(txn, env->meta_dbi, 0)) != 0)
		return rc;
	return 0;
}

int loopguard_db_purge(struct loopguard_db *db, time_t now, bool all,
		       unsigned int *purged_r, const char **error_r)
{
	const char *func;
	int rc;

	*purged_r = 0;
	if (loopguard_db_check(db, error_r) < 0)
		return -1;
	if (all) {
		return loopguard_db_write(db, now, TRUE,
					  loopguard_db_purge_all_txn,
					  purged_r, error_r);
	}
	rc = loopguard_db_purge_expired(db, now, purged_r, &func);
	if (rc != 0) {
		*error_r = loopguard_db_failed(db->env, func, rc);
		return -1;
	}
	return 0;
}

/* Visits one entry of a scan; returns FALSE to stop. Runs inside
   T_BEGIN/T_END. */
typedef bool
loopguard_db_scan_visit_t(struct loopguard_db_env *env, const MDB_val *key,
			  const MDB_val *value, void *context);

/* Walks a named database in key order in one read transaction. */
static int
loopguard_db_scan(struct loopguard_db *db, MDB_dbi dbi,
		  loopguard_db_scan_visit_t *visit, void *context,
		  const char **error_r)
{
	struct loopguard_db_env *env = db->env;
	const char *func = "mdb_txn_begin";
	MDB_cursor *cursor;
	MDB_txn *txn;
	MDB_val k, v;
	bool stopped = FALSE;
	int rc;

	if (loopguard_db_check(db, error_r) < 0)
		return -1;
	if ((rc = loopguard_db_txn_begin(env, FALSE, &txn)) != 0) {
		*error_r = loopguard_db_failed(env, func, rc);
		return -1;
	}
	func = "mdb_cursor_open";
	if ((rc = mdb_cursor_open(txn, dbi, &cursor)) != 0) {
		mdb_txn_abort(txn);
		*error_r = loopguard_db_failed(env, func, rc);
		return -1;
	}
	func = "mdb_cursor_get";
	rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
	while (rc == 0 && !stopped) {
		T_BEGIN {
			stopped = !visit(env, &k, &v, context);
		} T_END;
		if (!stopped)
			rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cursor);
	mdb_txn_abort(txn);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		*error_r = loopguard_db_failed(env, func, rc);
		return -1;
	}
	if (stopped) {
		*error_r = t_strdup_printf("loopguard db %s: "
					   "iteration stopped", env->path);
		return -1;
	}
	return 0;
}

struct loopguard_db_iterate_context {
	time_t now;
	loopguard_db_iterate_callback_t *callback;
	void *context;
};

static bool
loopguard_db_iterate_visit(struct loopguard_db_env *env, const MDB_val *key,
			   const MDB_val *value, void *context)
{
	struct loopguard_db_iterate_context *ictx = context;
	struct loopguard_db_record record;
	const char *error;

	if (!loopguard_db_record_parse(env, key, value, &record, &error)) {
		i_warning("loopguard db %s: ignoring unreadable record: %s",
			  env->path, error);
		return TRUE;
	}
	if (record.expires <= ictx->now)
		return TRUE;
	return ictx->callback(&record, ictx->context) >= 0;
}

/* The callback runs inside a read transaction and a T_BEGIN/T_END of its
   own: the record's strings and payload are valid only during the call, so
   whatever it keeps goes to a pool that is not the data stack. It must not
   write to the store (growing the map needs all transactions closed). */
int loopguard_db_iterate(struct loopguard_db *db, time_t now,
			 loopguard_db_iterate_callback_t *callback,
			 void *context, const char **error_r)
{
	struct loopguard_db_iterate_context ictx = {
		.now = now,
		.callback = callback,
		.context = context,
	};

	return loopguard_db_scan(db, db->env->records_dbi,
				 loopguard_db_iterate_visit, &ictx, error_r);
}

/*
 * Log
 */

struct loopguard_db_log_context {
	const string_t *value;
	unsigned int log_size;
};

static void
loopguard_db_log_event_build(const struct loopguard_db_event *event,
			     string_t *dest)
{
	str_append_c(dest, LOOPGUARD_DB_LOG_VERSION);
	str_printfa(dest, "%"PRId64"\t", (int64_t)event->time);
	str_append_tabescaped(dest, event->test == NULL ? "" : event->test);
	str_append_c(dest, '\t');
	str_append_tabescaped(dest, event->handle == NULL ? "" : event->handle);
	str_append_c(dest, '\t');
	str_append_tabescaped(dest, event->key == NULL ? "" : event->key);
	str_append_c(dest, '\t');
	str_append_tabescaped(dest, event->reasons == NULL ?
			      "" : event->reasons);
	str_append_c(dest, '\t');
	str_append_tabescaped(dest, event->message_id == NULL ?
			      "" : event->message_id);
	str_printfa(dest, "\t%u\t%u\t%"PRId64, event->count, event->window,
		    (int64_t)event->locked_until);
}

/* Strings are allocated from the data stack. */
static bool
loopguard_db_log_event_parse(const MDB_val *v,
			     struct loopguard_db_event *event_r)
{
	const unsigned char *p = v->mv_data;
	const char *const *args;
	int64_t time, locked_until;

	i_zero(event_r);
	if (v->mv_size < 1 || p[0] != LOOPGUARD_DB_LOG_VERSION)
		return FALSE;
	args = t_strsplit_tabescaped(t_strndup(p + 1, v->mv_size - 1));
	/* newer versions may append fields */
	if (str_array_length(args) < LOOPGUARD_DB_LOG_FIELD_COUNT)
		return FALSE;
	if (str_to_int64(args[0], &time) < 0 ||
	    str_to_uint(args[6], &event_r->count) < 0 ||
	    str_to_uint(args[7], &event_r->window) < 0 ||
	    str_to_int64(args[8], &locked_until) < 0)
		return FALSE;
	event_r->time = (time_t)time;
	event_r->test = args[1];
	event_r->handle = args[2];
	event_r->key = args[3];
	event_r->reasons = args[4];
	event_r->message_id = args[5];
	event_r->locked_until = (time_t)locked_until;
	return TRUE;
}

static int
loopguard_db_log_append_txn(struct loopguard_db *db, MDB_txn *txn,
			    void *context, const char **func_r)
{
	struct loopguard_db_log_context *ctx = context;
	struct loopguard_db_env *env = db->env;
	unsigned char seq_buf[LOOPGUARD_DB_LOG_KEY_SIZE];
	MDB_cursor *cursor;
	MDB_stat stat;
	MDB_val k, v;
	uint64_t seq = 0;
	size_t entries;
	int rc;

	*func_r = "mdb_cursor_open";
	if ((rc = mdb_cursor_open(txn, env->log_dbi, &cursor)) != 0)
		return rc;
	*func_r = "mdb_cursor_get";
	rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
	if (rc == 0 && k.mv_size != LOOPGUARD_DB_LOG_KEY_SIZE) {
		/* Not a key we wrote: sequence numbers cannot continue after
		   it, and the log is only a convenience, so start it over. */
		i_warning("loopguard db %s: log has a foreign key, "
			  "clearing the log", env->path);
		*func_r = "mdb_drop";
		rc = mdb_drop(txn, env->log_dbi, 0);
		if (rc == 0)
			rc = MDB_NOTFOUND;
	} else if (rc == 0) {
		seq = be64_to_cpu_unaligned(k.mv_data);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;

	if (rc == 0 && ctx->log_size > 0) {
		cpu64_to_be_unaligned(seq + 1, seq_buf);
		k.mv_data = seq_buf;
		k.mv_size = sizeof(seq_buf);
		v.mv_data = (void *)str_data(ctx->value);
		v.mv_size = str_len(ctx->value);
		*func_r = "mdb_put";
		rc = mdb_cursor_put(cursor, &k, &v, MDB_APPEND);
	}
	if (rc == 0) {
		*func_r = "mdb_stat";
		rc = mdb_stat(txn, env->log_dbi, &stat);
	}
	if (rc == 0) {
		*func_r = "mdb_cursor_del";
		for (entries = stat.ms_entries; entries > ctx->log_size;
		     entries--) {
			rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
			if (rc == 0)
				rc = mdb_cursor_del(cursor, 0);
			if (rc != 0)
				break;
		}
	}
	mdb_cursor_close(cursor);
	return rc;
}

int loopguard_db_log_append(struct loopguard_db *db,
			    const struct loopguard_db_event *event,
			    const char **error_r)
{
	struct loopguard_db_log_context ctx;
	string_t *value;
	int ret;

	if (loopguard_db_check(db, error_r) < 0)
		return -1;

	T_BEGIN {
		value = t_str_new(256);
		loopguard_db_log_event_build(event, value);
		i_zero(&ctx);
		ctx.value = value;
		ctx.log_size = db->log_size;
		ret = loopguard_db_write(db, time(NULL), FALSE,
					 loopguard_db_log_append_txn, &ctx,
					 error_r);
	} T_END_PASS_STR_IF(ret < 0, error_r);
	return ret;
}

/* Same rules for the callback as for loopguard_db_iterate(). Entries are
   visited in the order they were appended, which is time order unless the
   clock jumped back. */
struct loopguard_db_log_iterate_context {
	time_t since;
	loopguard_db_log_callback_t *callback;
	void *context;
};

static bool
loopguard_db_log_iterate_visit(struct loopguard_db_env *env,
			       const MDB_val *key ATTR_UNUSED,
			       const MDB_val *value, void *context)
{
	struct loopguard_db_log_iterate_context *lctx = context;
	struct loopguard_db_event event;

	if (!loopguard_db_log_event_parse(value, &event)) {
		i_warning("loopguard db %s: ignoring unreadable log entry",
			  env->path);
		return TRUE;
	}
	if (event.time < lctx->since)
		return TRUE;
	return lctx->callback(&event, lctx->context) >= 0;
}

int loopguard_db_log_iterate(struct loopguard_db *db, time_t since,
			     loopguard_db_log_callback_t *callback,
			     void *context, const char **error_r)
{
	struct loopguard_db_log_iterate_context lctx = {
		.since = since,
		.callback = callback,
		.context = context,
	};

	return loopguard_db_scan(db, db->env->log_dbi,
				 loopguard_db_log_iterate_visit, &lctx,
				 error_r);
}
