/* The per-user LMDB store: expiring records and a capped event log. */

#include "lib.h"
#include "buffer.h"
#include "str.h"
#include "strescape.h"
#include "strnum.h"
#include "byteorder.h"
#include "llist.h"
#include "sha2.h"
#include "fd-util.h"
#include "str-sanitize.h"
#include "loopguard-db.h"
#include "loopguard-db-verify.h"

#include <stdio.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#  include <sys/vfs.h>
#endif
#include <lmdb.h>

/* Version 2 widened the handle length from 2 to 4 bytes; version 1 values
   are still read, and rewritten as version 2 by the next update. */
#define LOOPGUARD_DB_RECORD_VERSION 2
#define LOOPGUARD_DB_RECORD_VERSION_V1 1
#define LOOPGUARD_DB_LOG_VERSION 1
/* version byte, expires, handle length */
#define LOOPGUARD_DB_RECORD_HEADER_SIZE (1 + 8 + 4)
#define LOOPGUARD_DB_RECORD_HEADER_SIZE_V1 (1 + 8 + 2)
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
/* Records examined for expired ones when the map is full. */
#define LOOPGUARD_DB_ROOM_SCAN_COUNT 1024
/* Records examined / deleted per transaction by a full purge. */
#define LOOPGUARD_DB_PURGE_SCAN_COUNT 1024
#define LOOPGUARD_DB_PURGE_DELETE_COUNT 256
#define LOOPGUARD_DB_MAX_RESIZE_RETRIES 3
/* Opens retried when the lock file was replaced while LMDB opened it. */
#define LOOPGUARD_DB_MAX_OPEN_RETRIES 3

#define LOOPGUARD_DB_META_SWEEP "sweep"

/* One per data file and process, shared by all handles of that file. */
struct loopguard_db_env {
	struct loopguard_db_env *prev, *next;

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

	/* Listed in loopguard_db_envs, so that opens of the path share it. */
	bool registered:1;
	/* inherited over fork(): on loopguard_db_inherited_envs */
	bool inherited:1;
	/* The environment failed and is closed (env == NULL); the handles
	   left only get closed. */
	bool broken:1;

	/* What the environment was opened for, so that an idle one is
	   reused only for the same file and limits. */
	dev_t dev;
	ino_t ino;
	uoff_t max_size;
	loopguard_db_expires_func_t *record_expires;
	/* The data file as last verified or written by this process: an
	   idle environment is verified again when it has changed since. */
	struct timespec known_mtime;
	uoff_t known_size;
	/* where the next search for room in a full map goes on */
	buffer_t *room_position;
	/* The delivery transaction open on this file in this process: every
	   read and write of any handle goes into it, as a second write
	   transaction of this process would wait for the first for ever. */
	struct loopguard_db_delivery *delivery;
};

/* Larger than the lock table LMDB sizes for its default 126 readers. */
#define LOOPGUARD_DB_LOCK_FILE_SIZE (16 * 1024)

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

struct loopguard_db_delivery {
	struct loopguard_db *db;
	/* NULL when it could not be begun again after MDB_MAP_FULL, or the
	   environment broke: the delivery then only fails */
	MDB_txn *txn;
	/* a change is in txn: starting txn afresh would lose it */
	bool written:1;
	/* the map was too small for a change: grow it once txn ended */
	bool grow:1;
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
static void loopguard_db_env_note_file(struct loopguard_db_env *env);

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
	/* the environment first: closing the lock file drops its locks */
	if (env->env != NULL)
		mdb_env_close(env->env);
	i_close_fd(&env->lock_fd);
	buffer_free(&env->room_position);
	i_free(env->path);
	i_free(env);
}

/* Takes a failed environment out of use at once: its handles fail from
   now on, and the next open of the path gets a fresh environment, which
   must not share this process's locks with a still open one. */
static void loopguard_db_env_shut(struct loopguard_db_env *env)
{
	env->broken = TRUE;
	loopguard_db_env_unregister(env);
	if (env->delivery != NULL && env->delivery->txn != NULL) {
		mdb_txn_abort(env->delivery->txn);
		env->delivery->txn = NULL;
	}
	if (env->env != NULL) {
		mdb_env_close(env->env);
		env->env = NULL;
	}
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

static const char *loopguard_db_lock_path(const char *path)
{
	return t_strconcat(path, "-lock", NULL);
}

/* Whether fd is the file the lock path names now: a file moved aside
   takes its lock file with it. Returns 1 if so, 0 if not, -1 on error. */
static int
loopguard_db_lock_is_current(const char *path, int fd, const char **error_r)
{
	const char *lock_path = loopguard_db_lock_path(path);
	struct stat st_fd, st_path;

	if (fstat(fd, &st_fd) < 0) {
		*error_r = t_strdup_printf("loopguard db %s: fstat(%s) failed: %m",
					   path, lock_path);
		return -1;
	}
	if (stat(lock_path, &st_path) < 0) {
		if (errno == ENOENT)
			return 0;
		*error_r = t_strdup_printf("loopguard db %s: stat(%s) failed: %m",
					   path, lock_path);
		return -1;
	}
	return st_fd.st_dev == st_path.st_dev &&
		st_fd.st_ino == st_path.st_ino ? 1 : 0;
}

/* Moves a data file LMDB cannot use out of the way, so that the next open
   starts a fresh store instead of failing (or crashing) on it forever.

   Other processes may have the file open, and a writer of theirs must not
   end up excluded by another lock file than a new opener's. So the file
   moves only under the exclusive lock LMDB takes on the first byte of the
   lock file when nobody has it open (every open environment holds a read
   lock there). This process must have closed its environment of the file:
   its own locks would not conflict, and closing *lock_fd drops them. An
   opener waiting meanwhile ends up with the unlinked lock file, which
   loopguard_db_env_open() notices. Closes *lock_fd. */
static const char *
loopguard_db_move_aside(const char *path, int *lock_fd, const char *reason)
{
	const char *broken_path = t_strconcat(path, ".broken", NULL);
	const char *lock_path = loopguard_db_lock_path(path);
	const char *error, *lock_error = "";
	struct flock fl;
	int ret;

	i_zero(&fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = 0;
	fl.l_len = 1;
	if (fcntl(*lock_fd, F_SETLK, &fl) < 0) {
		if (errno == EAGAIN || errno == EACCES) {
			error = t_strdup_printf(
				"loopguard db %s: %s; the store is broken "
				"and will be moved aside when no delivery "
				"uses it", path, reason);
		} else {
			error = t_strdup_printf(
				"loopguard db %s: %s; fcntl(%s) failed: %m",
				path, reason, lock_path);
		}
		i_close_fd(lock_fd);
		return error;
	}
	ret = loopguard_db_lock_is_current(path, *lock_fd, &error);
	if (ret <= 0) {
		i_close_fd(lock_fd);
		if (ret < 0)
			return t_strdup_printf("%s (%s)", error, reason);
		/* another process moved it while we were looking */
		return t_strdup_printf("loopguard db %s: %s; another process "
				       "has moved it aside", path, reason);
	}

	if (rename(path, broken_path) < 0 && errno != ENOENT) {
		error = t_strdup_printf("loopguard db %s: %s; "
					"rename(%s) failed: %m",
					path, reason, broken_path);
		i_close_fd(lock_fd);
		return error;
	}
	/* The lock file belongs to the old data file; a fresh one is made
	   along with the fresh store. */
	if (unlink(lock_path) < 0 && errno != ENOENT) {
		lock_error = t_strdup_printf(" (unlink(%s) failed: %m)",
					     lock_path);
	}
	i_close_fd(lock_fd);
	return t_strdup_printf("loopguard db %s: %s; moved it to %s, "
			       "the next open starts a fresh store%s",
			       path, reason, broken_path, lock_error);
}

/* Turns a failed MDB call into an error string, and takes the environment
   (and the file, when the failure says it is damaged) out of use. */
static const char *
loopguard_db_failed(struct loopguard_db_env *env, const char *func, int rc)
{
	if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND) {
		/* Closes every handle's view of the file, and this process's
		   locks on it, so that only other processes can keep the
		   file from moving. */
		loopguard_db_env_shut(env);
		return loopguard_db_move_aside(env->path, &env->lock_fd,
			t_strdup_printf("%s failed: %s", func,
					mdb_strerror(rc)));
	}
	if (rc == MDB_PANIC) {
		/* LMDB wants this env shut down; the file itself may be
		   fine, so it stays where it is. */
		loopguard_db_env_shut(env);
		i_close_fd(&env->lock_fd);
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

static int
loopguard_db_make_room(struct loopguard_db *db, time_t now,
		       const char **func_r);

/* The error for MDB_MAP_FULL that purging and growing did not cure.
   Returns LOOPGUARD_DB_FULL when the map is at its limit, else -1. */
static int
loopguard_db_map_full_error(struct loopguard_db *db, const char *func_name,
			    const char *extra, const char **error_r)
{
	MDB_envinfo info;
	bool at_limit;

	if (mdb_env_info(db->env->env, &info) != 0)
		info.me_mapsize = 0;
	/* Below the limit the map could not grow (address space?), or one
	   retry was not enough: the next try may succeed. */
	at_limit = info.me_mapsize >= db->env->soft_map_size;
	*error_r = t_strdup_printf(
		"loopguard db %s: %s failed: %s (map size %zu, limit %zu, "
		"even after purging expired records%s%s)",
		db->env->path, func_name, mdb_strerror(MDB_MAP_FULL),
		info.me_mapsize, db->env->hard_map_size,
		at_limit ? ": the store is full of live records" : "", extra);
	return at_limit ? LOOPGUARD_DB_FULL : -1;
}

/* Pages kept free in the map for the delivery's commit: LMDB saves the
   pages the transaction freed into its free list only then, and that takes
   pages of its own. A commit that fails on MDB_MAP_FULL loses every change
   of the delivery, so a change that would leave less room than this is
   refused as the store being full while the delivery is still running. */
#define LOOPGUARD_DB_COMMIT_RESERVE_PAGES 8
#define LOOPGUARD_DB_META_COMMIT_RESERVE "commit-reserve"

/* Tries to take the commit's reserve in a transaction nested in txn and
   gives it back: returns 0 when there is room, MDB_MAP_FULL when not. An
   aborted nested transaction leaves its parent's pages as they were. */
static int
loopguard_db_commit_reserve_check(struct loopguard_db_env *env, MDB_txn *txn,
				  const char **func_r)
{
	MDB_txn *probe;
	MDB_val k, v;
	int rc;

	*func_r = "mdb_txn_begin";
	if ((rc = mdb_txn_begin(env->env, txn, 0, &probe)) != 0)
		return rc;
	k.mv_data = LOOPGUARD_DB_META_COMMIT_RESERVE;
	k.mv_size = strlen(LOOPGUARD_DB_META_COMMIT_RESERVE);
	v.mv_data = NULL;
	v.mv_size = LOOPGUARD_DB_COMMIT_RESERVE_PAGES *
		loopguard_db_page_size();
	*func_r = "mdb_put";
	rc = mdb_put(probe, env->meta_dbi, &k, &v, MDB_RESERVE);
	mdb_txn_abort(probe);
	return rc;
}

/* One change inside the delivery's transaction, as a nested transaction,
   so that a change that fails is undone alone and the delivery's earlier
   changes stay. The map cannot grow while a transaction is open: on
   MDB_MAP_FULL before the delivery changed anything, its transaction is
   begun afresh after making room; after that, the change fails and the
   map grows once the delivery's transaction has ended. */
static int
loopguard_db_delivery_write(struct loopguard_db *db, time_t now,
			    loopguard_db_txn_func_t *func, void *context,
			    const char **error_r)
{
	struct loopguard_db_env *env = db->env;
	struct loopguard_db_delivery *delivery = env->delivery;
	const char *func_name = "mdb_txn_begin";
	bool retried = FALSE;
	MDB_txn *txn;
	int rc;

	for (;;) {
		if (delivery->txn == NULL) {
			*error_r = t_strdup_printf(
				"loopguard db %s: the delivery's transaction "
				"ended after an error", env->path);
			return -1;
		}
		rc = mdb_txn_begin(env->env, delivery->txn, 0, &txn);
		if (rc == 0) {
			rc = func(db, txn, context, &func_name);
			if (rc == 0) {
				rc = loopguard_db_commit_reserve_check(
					env, txn, &func_name);
			}
			if (rc != 0)
				mdb_txn_abort(txn);
			else {
				func_name = "mdb_txn_commit";
				rc = mdb_txn_commit(txn);
			}
		}
		if (rc == 0) {
			delivery->written = TRUE;
			return 0;
		}
		if (rc != MDB_MAP_FULL || delivery->written || retried)
			break;
		retried = TRUE;
		mdb_txn_abort(delivery->txn);
		delivery->txn = NULL;
		rc = loopguard_db_make_room(db, now, &func_name);
		if (rc != 0 && rc != MDB_MAP_FULL)
			break;
		func_name = "mdb_txn_begin";
		rc = loopguard_db_txn_begin(env, TRUE, &delivery->txn);
		if (rc != 0) {
			delivery->txn = NULL;
			break;
		}
	}
	if (rc == MDB_MAP_FULL) {
		delivery->grow = TRUE;
		return loopguard_db_map_full_error(db, func_name,
			delivery->written ?
			"; the map grows after this delivery" : "", error_r);
	}
	*error_r = loopguard_db_failed(env, func_name, rc);
	return -1;
}

/* A write transaction with the map handling: MDB_MAP_RESIZED adopts the
   new size, MDB_MAP_FULL purges, grows and retries once. A func that only
   deletes may then also use the reserve. func may run more than once, so
   it must not have side effects outside the transaction. Returns 0, -1, or
   LOOPGUARD_DB_FULL when the map is at its limit with nothing expired. */
static int
loopguard_db_write(struct loopguard_db *db, time_t now, bool deletes_only,
		   loopguard_db_txn_func_t *func, void *context,
		   const char **error_r)
{
	const char *func_name;
	bool retried = FALSE, reserved = FALSE;
	int rc;

	if (db->env->delivery != NULL)
		return loopguard_db_delivery_write(db, now, func, context,
						   error_r);
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
	if (rc == 0) {
		loopguard_db_env_note_file(db->env);
		return 0;
	}
	if (rc == MDB_MAP_FULL)
		return loopguard_db_map_full_error(db, func_name, "", error_r);
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

	i_assert(handle_len <= (uint32_t)-1);
	i_assert(key_len <= (uint32_t)-1);

	buffer_set_used_size(dest, 0);
	p = buffer_append_space_unsafe(dest, LOOPGUARD_DB_RECORD_HEADER_SIZE);
	p[0] = LOOPGUARD_DB_RECORD_VERSION;
	cpu64_to_be_unaligned((uint64_t)(int64_t)expires, p + 1);
	cpu32_to_be_unaligned((uint32_t)handle_len, p + 9);
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
	if (size < 1 || (p[0] != LOOPGUARD_DB_RECORD_VERSION &&
			 p[0] != LOOPGUARD_DB_RECORD_VERSION_V1)) {
		*error_r = size < 1 ? "empty value" :
			t_strdup_printf("unknown version %u", p[0]);
		return FALSE;
	}
	pos = p[0] == LOOPGUARD_DB_RECORD_VERSION_V1 ?
		LOOPGUARD_DB_RECORD_HEADER_SIZE_V1 :
		LOOPGUARD_DB_RECORD_HEADER_SIZE;
	if (size < pos) {
		*error_r = t_strdup_printf("value too short (%zu bytes)",
					   size);
		return FALSE;
	}
	handle_len = p[0] == LOOPGUARD_DB_RECORD_VERSION_V1 ?
		be16_to_cpu_unaligned(p + 9) : be32_to_cpu_unaligned(p + 9);
	if (size - pos < 4 || size - pos - 4 < handle_len) {
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

/* Unreadable records met inside a transaction: they are logged after it
   ends, not while a write transaction keeps every other delivery waiting. */
struct loopguard_db_unreadable {
	unsigned int count;
	char first_error[128];
};

static void
loopguard_db_unreadable_add(struct loopguard_db_unreadable *unreadable,
			    const char *error)
{
	if (unreadable->count++ == 0) {
		(void)i_strocpy(unreadable->first_error, error,
				sizeof(unreadable->first_error));
	}
}

static void
loopguard_db_unreadable_merge(struct loopguard_db_unreadable *dest,
			      const struct loopguard_db_unreadable *src)
{
	if (src->count == 0)
		return;
	if (dest->count == 0)
		*dest = *src;
	else
		dest->count += src->count;
}

/* what: "ignoring" or "dropped" */
static void
loopguard_db_unreadable_log(const struct loopguard_db_env *env,
			    const struct loopguard_db_unreadable *unreadable,
			    const char *what)
{
	if (unreadable->count == 1) {
		i_warning("loopguard db %s: %s unreadable record: %s",
			  env->path, what, unreadable->first_error);
	} else if (unreadable->count > 1) {
		i_warning("loopguard db %s: %s %u unreadable records "
			  "(the first: %s)", env->path, what,
			  unreadable->count, unreadable->first_error);
	}
}

/* For the one record a lookup or update asked for. */
static void
loopguard_db_unreadable_log_handle(const struct loopguard_db_env *env,
				   const char *handle,
				   const struct loopguard_db_unreadable *unreadable)
{
	if (unreadable->count > 0) {
		i_warning("loopguard db %s: ignoring unreadable record "
			  "(handle %s): %s", env->path,
			  str_sanitize(handle, 128), unreadable->first_error);
	}
}

static time_t
loopguard_db_record_expires(const struct loopguard_db_env *env,
			    const struct loopguard_db_record *record,
			    time_t now)
{
	if (env->record_expires == NULL)
		return record->expires;
	return I_MIN(record->expires, env->record_expires(record, now));
}

/* The live record stored under k for kind/handle/key, if any. Unreadable
   values are treated as absent, and added to unreadable. */
static bool
loopguard_db_record_get(const struct loopguard_db_env *env,
			const MDB_val *k, const MDB_val *v,
			const char *handle, const char *key, time_t now,
			struct loopguard_db_record *record_r,
			struct loopguard_db_unreadable *unreadable)
{
	const char *error;

	if (!loopguard_db_record_parse(env, k, v, record_r, &error)) {
		loopguard_db_unreadable_add(unreadable, error);
		return FALSE;
	}
	if (strcmp(record_r->handle, handle) != 0 ||
	    strcmp(record_r->key, key) != 0) {
		/* only a SHA-256 collision gets here */
		return FALSE;
	}
	record_r->expires = loopguard_db_record_expires(env, record_r, now);
	return record_r->expires > now;
}

/* Whether the sweep and purge drop the record: expired, or not readable
   (a value we cannot parse is of no use and is never trusted). */
static bool
loopguard_db_record_is_dead(const struct loopguard_db_env *env,
			    const MDB_val *k, const MDB_val *v, time_t now,
			    struct loopguard_db_unreadable *unreadable)
{
	struct loopguard_db_record record;
	const char *error;
	bool dead;

	T_BEGIN {
		if (!loopguard_db_record_parse(env, k, v, &record, &error)) {
			loopguard_db_unreadable_add(unreadable, error);
			dead = TRUE;
		} else {
			dead = loopguard_db_record_expires(env, &record,
							   now) <= now;
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

/* One step of the sweep or the purge: examines up to max_scan records
   from start (the first record when empty), deletes the dead ones among
   them (at most max_deletes), and leaves in next_key where the next step
   goes on, or nothing when it reached the end. */
struct loopguard_db_reap {
	const buffer_t *start;
	unsigned int max_scan, max_deletes;
	time_t now;

	buffer_t *next_key;
	/* scratch: the keys to delete */
	buffer_t *dead;
	unsigned int deleted;
	struct loopguard_db_unreadable unreadable;
};

static int
loopguard_db_reap(struct loopguard_db_env *env, MDB_txn *txn,
		  struct loopguard_db_reap *reap, const char **func_r)
{
	MDB_cursor *cursor;
	MDB_val k, v;
	unsigned int scanned = 0, deletes = 0;
	int rc;

	buffer_set_used_size(reap->next_key, 0);
	buffer_set_used_size(reap->dead, 0);
	reap->deleted = 0;
	/* this may be a retry after MDB_MAP_FULL */
	i_zero(&reap->unreadable);

	*func_r = "mdb_cursor_open";
	if ((rc = mdb_cursor_open(txn, env->records_dbi, &cursor)) != 0)
		return rc;
	if (reap->start->used > 0) {
		k.mv_data = (void *)reap->start->data;
		k.mv_size = reap->start->used;
		rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
	}
	while (rc == 0) {
		if (scanned == reap->max_scan ||
		    deletes == reap->max_deletes) {
			buffer_append(reap->next_key, k.mv_data, k.mv_size);
			break;
		}
		scanned++;
		if (loopguard_db_record_is_dead(env, &k, &v, reap->now,
						&reap->unreadable)) {
			loopguard_db_keylist_add(reap->dead, &k);
			deletes++;
		}
		rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cursor);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		*func_r = "mdb_cursor_get";
		return rc;
	}
	reap->deleted = deletes;
	return loopguard_db_keylist_delete(txn, env->records_dbi, reap->dead,
					   func_r);
}

static int
loopguard_db_room_txn(struct loopguard_db *db, MDB_txn *txn, void *context,
		      const char **func_r)
{
	return loopguard_db_reap(db->env, txn, context, func_r);
}

/* After MDB_MAP_FULL: frees what has expired among a bounded number of
   records, continuing where the last sweep stopped, then grows the map.
   A full pass over a full store would cost every delivery a scan of all
   its records under the write lock; bounded, successive deliveries cover
   the store between them. Returns 0 when the retry has a chance,
   MDB_MAP_FULL when it has none, or another MDB error. */
static int
loopguard_db_make_room(struct loopguard_db *db, time_t now,
		       const char **func_r)
{
	struct loopguard_db_reap reap;
	bool grew, reserved = FALSE;
	int rc;

	i_zero(&reap);
	reap.now = now;
	reap.max_scan = LOOPGUARD_DB_ROOM_SCAN_COUNT;
	reap.max_deletes = LOOPGUARD_DB_PURGE_DELETE_COUNT;
	/* The position is kept in memory: storing it would take pages of
	   the full map even when nothing was deleted. */
	reap.start = db->env->room_position;
	reap.next_key = t_buffer_create(64);
	reap.dead = t_buffer_create(1024);
	for (;;) {
		rc = loopguard_db_write_once(db, loopguard_db_room_txn, &reap,
					     func_r);
		if (rc != MDB_MAP_FULL)
			break;
		/* deleting needs fresh pages too: fewer at a time, in the
		   reserve */
		if (!reserved && loopguard_db_reserve_use(db->env))
			reserved = TRUE;
		else if (reap.max_deletes > 1)
			reap.max_deletes /= 2;
		else
			break;
	}
	if (reserved)
		loopguard_db_reserve_release(db->env);
	if (rc != 0 && rc != MDB_MAP_FULL)
		return rc;
	if (rc == 0) {
		buffer_set_used_size(db->env->room_position, 0);
		buffer_append_buf(db->env->room_position, reap.next_key,
				  0, SIZE_MAX);
		loopguard_db_unreadable_log(db->env, &reap.unreadable,
					    "dropped");
	}
	grew = loopguard_db_grow(db->env);
	return (rc == 0 && reap.deleted > 0) || grew ? 0 : MDB_MAP_FULL;
}

/*
 * Open and close
 */

/* Records the data file as this process last saw it sound. */
static void loopguard_db_env_note_file(struct loopguard_db_env *env)
{
	struct stat st;
	int fd;

	if (mdb_env_get_fd(env->env, &fd) == 0 && fstat(fd, &st) == 0) {
		env->known_mtime = st.st_mtim;
		env->known_size = st.st_size;
	}
}

/* Whether something else than this process wrote to the data file since
   it last verified or wrote it: another delivery, or damage. */
static bool loopguard_db_env_file_changed(struct loopguard_db_env *env)
{
	struct stat st;
	int fd;

	if (mdb_env_get_fd(env->env, &fd) != 0 || fstat(fd, &st) < 0)
		return TRUE;
	return st.st_mtim.tv_sec != env->known_mtime.tv_sec ||
		st.st_mtim.tv_nsec != env->known_mtime.tv_nsec ||
		(uoff_t)st.st_size != env->known_size;
}

/* Checks every page LMDB can reach before LMDB reads it through the map
   (see loopguard-db-verify.h): a damaged page would crash the process,
   not fail a call. A damaged file is moved aside like a garbage file.
   Returns 0, or -1 (with the environment shut when the file is damaged). */
static int
loopguard_db_env_verify(struct loopguard_db_env *env, const char **error_r)
{
	const char *reason;
	MDB_txn *txn;
	int fd, rc, ret;

	/* the read transaction keeps writers off the pages being read */
	if ((rc = loopguard_db_txn_begin(env, FALSE, &txn)) != 0) {
		*error_r = loopguard_db_failed(env, "mdb_txn_begin", rc);
		return -1;
	}
	if ((rc = mdb_env_get_fd(env->env, &fd)) != 0) {
		mdb_txn_abort(txn);
		*error_r = loopguard_db_mdb_error(env->path,
						  "mdb_env_get_fd", rc);
		return -1;
	}
	ret = loopguard_db_verify(fd, loopguard_db_page_size(), &reason);
	mdb_txn_abort(txn);
	if (ret > 0) {
		loopguard_db_env_note_file(env);
		return 0;
	}
	if (ret < 0) {
		*error_r = t_strdup_printf("loopguard db %s: %s",
					   env->path, reason);
		return -1;
	}
	loopguard_db_env_shut(env);
	*error_r = loopguard_db_move_aside(env->path, &env->lock_fd,
		t_strdup_printf("the store is %s", reason));
	return -1;
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

struct loopguard_db_map_sizes {
	/* max_size: the reserve is used only for deletions */
	size_t hard;
	/* ordinary writes grow the map up to here */
	size_t soft;
	/* what a new environment starts with */
	size_t initial;
};

static void
loopguard_db_map_sizes_get(uoff_t max_size,
			   struct loopguard_db_map_sizes *sizes_r)
{
	size_t hard, reserve;

	hard = max_size > SIZE_MAX ? SIZE_MAX : (size_t)max_size;
	hard = loopguard_db_round_to_page(I_MAX(hard,
						LOOPGUARD_DB_MIN_MAP_SIZE));
	reserve = I_MAX(hard / LOOPGUARD_DB_RESERVE_DIVISOR,
			LOOPGUARD_DB_RESERVE_MIN_PAGES *
			loopguard_db_page_size());
	sizes_r->hard = hard;
	sizes_r->soft = loopguard_db_round_to_page(hard - reserve);
	sizes_r->initial = I_MIN(sizes_r->soft,
				 LOOPGUARD_DB_INITIAL_MAP_SIZE);
}

static int
loopguard_db_lock_open(const char *path, int *fd_r, const char **error_r)
{
	const char *lock_path = loopguard_db_lock_path(path);
	int ret;

	*fd_r = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (*fd_r < 0) {
		*error_r = t_strdup_printf("loopguard db %s: open(%s) failed: %m",
					   path, lock_path);
		return -1;
	}
	/* LMDB extends the lock file with ftruncate() and writes to it
	   through a shared mapping: on a full file system that write would
	   be a SIGBUS. Allocating the blocks first turns it into ENOSPC. */
	if ((ret = posix_fallocate(*fd_r, 0,
				   LOOPGUARD_DB_LOCK_FILE_SIZE)) != 0) {
		errno = ret;
		*error_r = t_strdup_printf("loopguard db %s: "
			"posix_fallocate(%s) failed: %m", path, lock_path);
		i_close_fd(fd_r);
		return -1;
	}
	return 0;
}

/* Opens the MDB_env, with *lock_fd opened before it. Returns 1 when done,
   0 when LMDB got a lock file that has been moved aside meanwhile (the
   caller tries again), -1 on error, with *lock_fd closed then. */
static int
loopguard_db_env_open_mdb(const struct loopguard_db_settings *set,
			  size_t initial_size, MDB_env **mdb_r, int *lock_fd,
			  const char **error_r)
{
	unsigned int flags = MDB_NOSUBDIR | MDB_NOTLS;
	const char *func;
	MDB_env *mdb;
	int rc, ret;

	/* MDB_NOSYNC would keep the file intact only on filesystems that
	   preserve write order; MDB_NOMETASYNC keeps it intact everywhere
	   and only risks losing the last commit in a system crash. */
	if (!set->sync)
		flags |= MDB_NOMETASYNC;

	*mdb_r = NULL;
	if (loopguard_db_lock_open(set->path, lock_fd, error_r) < 0)
		return -1;
	if ((rc = mdb_env_create(&mdb)) != 0) {
		*error_r = loopguard_db_mdb_error(set->path,
						  "mdb_env_create", rc);
		i_close_fd(lock_fd);
		return -1;
	}
	if ((rc = mdb_env_set_maxdbs(mdb, 3)) != 0)
		func = "mdb_env_set_maxdbs";
	else if ((rc = mdb_env_set_mapsize(mdb, initial_size)) != 0)
		func = "mdb_env_set_mapsize";
	else if ((rc = mdb_env_open(mdb, set->path, flags, 0600)) != 0)
		func = "mdb_env_open";
	if (rc != 0) {
		mdb_env_close(mdb);
		if (loopguard_db_rc_is_corruption(rc)) {
			*error_r = loopguard_db_move_aside(set->path, lock_fd,
				t_strdup_printf("not a usable LMDB file: %s",
						mdb_strerror(rc)));
		} else {
			*error_r = loopguard_db_mdb_error(set->path, func, rc);
			i_close_fd(lock_fd);
		}
		return -1;
	}

	/* A file moved aside while LMDB waited for its lock leaves LMDB
	   with a lock file nobody else uses any more. */
	ret = loopguard_db_lock_is_current(set->path, *lock_fd, error_r);
	if (ret <= 0) {
		mdb_env_close(mdb);
		i_close_fd(lock_fd);
		return ret;
	}
	*mdb_r = mdb;
	return 1;
}

static int
loopguard_db_env_open(const struct loopguard_db_settings *set,
		      struct loopguard_db_env **env_r, const char **error_r)
{
	struct loopguard_db_map_sizes sizes;
	struct loopguard_db_env *env;
	MDB_env *mdb;
	struct stat st;
	mdb_filehandle_t fd;
	unsigned int i;
	int lock_fd, rc, ret, dead;

	loopguard_db_map_sizes_get(set->max_size, &sizes);
	for (i = 0;; i++) {
		ret = loopguard_db_env_open_mdb(set, sizes.initial, &mdb,
						&lock_fd, error_r);
		if (ret != 0)
			break;
		if (i == LOOPGUARD_DB_MAX_OPEN_RETRIES) {
			*error_r = t_strdup_printf(
				"loopguard db %s: the lock file keeps being "
				"replaced while opening it", set->path);
			return -1;
		}
	}
	if (ret < 0)
		return -1;

	/* Slots left behind by crashed deliveries would pin old pages
	   forever and make the file grow. */
	(void)mdb_reader_check(mdb, &dead);

	env = i_new(struct loopguard_db_env, 1);
	env->path = i_strdup(set->path);
	env->env = mdb;
	env->lock_fd = lock_fd;
	env->pid = getpid();
	env->max_size = set->max_size;
	env->record_expires = set->record_expires;
	if (mdb_env_get_fd(mdb, &fd) == 0 && fstat(fd, &st) == 0) {
		env->dev = st.st_dev;
		env->ino = st.st_ino;
	}
	env->max_key_size = mdb_env_get_maxkeysize(mdb);
	env->room_position = buffer_create_dynamic(default_pool, 64);
	env->soft_map_size = sizes.soft;
	env->hard_map_size = sizes.hard;

	/* A user whose store has grown keeps its size, instead of going
	   through the growth steps again in every process. */
	if ((rc = loopguard_db_map_adopt(env)) != 0) {
		*error_r = loopguard_db_mdb_error(set->path,
						  "mdb_env_set_mapsize", rc);
		loopguard_db_env_free(&env);
		return -1;
	}
	if (loopguard_db_env_verify(env, error_r) < 0 ||
	    loopguard_db_env_open_dbis(env, error_r) < 0) {
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
static void loopguard_db_env_make_idle(struct loopguard_db_env *env)
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

/* statfs() f_type values (linux/magic.h, not every one in every version's
   header) of file systems where LMDB's fcntl() locks, robust mutexes in a
   shared lock file or a coherent shared map cannot be relied on. */
static const struct {
	long type;
	const char *name;
} loopguard_db_network_fs[] = {
	{ 0x6969, "nfs" },
	{ 0x517B, "smb" },
	{ 0xFF534D42, "cifs" },
	{ 0xFE534D42, "smb2" },
	{ 0x73757245, "coda" },
	{ 0x5346414F, "afs" },
	{ 0x6B414653, "afs" },
	{ 0x01021997, "9p" },
	{ 0x00C36400, "ceph" },
	{ 0x0BD00BD0, "lustre" },
	{ 0x01161970, "gfs2" },
	{ 0x7461636F, "ocfs2" },
};

long (*loopguard_db_fs_type_override)(const char *dir) = NULL;

const char *loopguard_db_network_fs_name(long fs_type)
{
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(loopguard_db_network_fs); i++) {
		/* f_type is signed on some architectures */
		if ((uint32_t)loopguard_db_network_fs[i].type ==
		    (uint32_t)fs_type)
			return loopguard_db_network_fs[i].name;
	}
	return NULL;
}

/* LMDB does not work on a network file system: its locks and its shared
   map would not exclude writers on other hosts, and the file would be
   corrupted. The directory is checked, as the file may not exist yet. */
static int
loopguard_db_check_local(const struct loopguard_db_settings *set,
			 const char **error_r)
{
	const char *dir, *p, *fs_name;
	long fs_type;

	if (set->allow_network_fs)
		return 0;
	p = strrchr(set->path, '/');
	dir = p == set->path ? "/" : t_strdup_until(set->path, p);
	if (loopguard_db_fs_type_override != NULL)
		fs_type = loopguard_db_fs_type_override(dir);
	else {
#ifdef __linux__
		struct statfs st;

		if (statfs(dir, &st) < 0) {
			/* open() reports a missing or unreadable directory
			   more precisely */
			return 0;
		}
		fs_type = (long)st.f_type;
#else
		return 0;
#endif
	}
	fs_name = loopguard_db_network_fs_name(fs_type);
	if (fs_name == NULL)
		return 0;
	*error_r = t_strdup_printf(
		"loopguard db %s: refusing a store on a network file system "
		"(%s): LMDB needs a local file system; move it with "
		"sieve_loopguard_db, or set "
		"sieve_loopguard_db_allow_network_fs = yes if this file "
		"system is known to be safe for LMDB", set->path, fs_name);
	return -1;
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
	if (env != NULL && env->refcount == 0 &&
	    loopguard_db_env_file_changed(env) &&
	    loopguard_db_env_verify(env, error_r) < 0) {
		/* damaged while idle: moved aside, or it could not be read */
		loopguard_db_env_free(&env);
		return -1;
	}
	if (env == NULL) {
		if (loopguard_db_check_local(set, error_r) < 0 ||
		    loopguard_db_env_open(set, &env, error_r) < 0)
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
	/* its owner ends a delivery before closing its handle */
	i_assert(env->delivery == NULL || env->delivery->db != db ||
		 env->pid != getpid());
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
		loopguard_db_env_make_idle(env);
}

/*
 * Delivery transactions
 */

/* Free pages a delivery may take without growing the map. */
#define LOOPGUARD_DB_DELIVERY_HEADROOM_PAGES 128

/* LMDB copies every page it changes, and the map cannot grow while the
   delivery's transaction is open: grow it first when it is nearly full. */
static void loopguard_db_delivery_headroom(struct loopguard_db_env *env)
{
	MDB_envinfo info;
	size_t used, page_size = loopguard_db_page_size();

	if (mdb_env_info(env->env, &info) != 0)
		return;
	used = (info.me_last_pgno + 1) * page_size;
	if (used + LOOPGUARD_DB_DELIVERY_HEADROOM_PAGES * page_size >
	    info.me_mapsize)
		(void)loopguard_db_grow(env);
}

int loopguard_db_delivery_begin(struct loopguard_db *db,
				struct loopguard_db_delivery **delivery_r,
				const char **error_r)
{
	struct loopguard_db_env *env = db->env;
	struct loopguard_db_delivery *delivery;
	MDB_txn *txn;
	int rc;

	*delivery_r = NULL;
	if (loopguard_db_check(db, error_r) < 0)
		return -1;
	if (env->delivery != NULL) {
		/* LMDB's writer lock is not recursive: this would wait for
		   itself for ever */
		*error_r = t_strdup_printf(
			"loopguard db %s: a delivery transaction is already "
			"open in this process", env->path);
		return -1;
	}
	loopguard_db_delivery_headroom(env);
	if ((rc = loopguard_db_txn_begin(env, TRUE, &txn)) != 0) {
		*error_r = loopguard_db_failed(env, "mdb_txn_begin", rc);
		return -1;
	}
	delivery = i_new(struct loopguard_db_delivery, 1);
	delivery->db = db;
	delivery->txn = txn;
	env->delivery = delivery;
	*delivery_r = delivery;
	return 0;
}

static void loopguard_db_delivery_end(struct loopguard_db_delivery **_delivery)
{
	struct loopguard_db_delivery *delivery = *_delivery;
	struct loopguard_db_env *env = delivery->db->env;

	*_delivery = NULL;
	i_assert(env->delivery == delivery);
	env->delivery = NULL;
	/* no transaction of this process is open now */
	if (delivery->grow && !env->broken)
		(void)loopguard_db_grow(env);
	i_free(delivery);
}

int loopguard_db_delivery_commit(struct loopguard_db_delivery **_delivery,
				 const char **error_r)
{
	struct loopguard_db_delivery *delivery = *_delivery;
	struct loopguard_db_env *env = delivery->db->env;
	MDB_txn *txn = delivery->txn;
	int rc, ret = 0;

	delivery->txn = NULL;
	if (env->pid != getpid()) {
		/* the parent's: only the parent may end it */
		*error_r = t_strdup_printf("loopguard db %s: delivery "
			"transaction of the parent used after fork()",
			env->path);
		*_delivery = NULL;
		return -1;
	}
	if (txn == NULL) {
		*error_r = t_strdup_printf("loopguard db %s: the delivery's "
			"transaction ended after an error", env->path);
		ret = -1;
	} else if (!delivery->written) {
		/* nothing changed: no commit, no flush */
		mdb_txn_abort(txn);
	} else if ((rc = mdb_txn_commit(txn)) != 0) {
		/* a failed commit frees the transaction too */
		if (rc == MDB_MAP_FULL)
			delivery->grow = TRUE;
		*error_r = loopguard_db_failed(env, "mdb_txn_commit", rc);
		ret = -1;
	} else {
		loopguard_db_env_note_file(env);
	}
	loopguard_db_delivery_end(_delivery);
	return ret;
}

void loopguard_db_delivery_abort(struct loopguard_db_delivery **_delivery)
{
	struct loopguard_db_delivery *delivery = *_delivery;
	struct loopguard_db_env *env;

	if (delivery == NULL)
		return;
	env = delivery->db->env;
	if (env->pid != getpid()) {
		*_delivery = NULL;
		return;
	}
	if (delivery->txn != NULL)
		mdb_txn_abort(delivery->txn);
	delivery->txn = NULL;
	loopguard_db_delivery_end(_delivery);
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

	struct loopguard_db_reap sweep;
	/* the updated record itself */
	struct loopguard_db_unreadable unreadable;
};

/* Examines a bounded number of records from where the previous sweep
   stopped and deletes the dead ones, so that the store stays small
   without any cron job while each delivery's work stays bounded. */
static int
loopguard_db_sweep(struct loopguard_db *db, MDB_txn *txn,
		   struct loopguard_db_reap *sweep, const char **func_r)
{
	struct loopguard_db_env *env = db->env;
	buffer_t start;
	MDB_val mk, mv;
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
	buffer_create_from_const_data(&start, mv.mv_data, mv.mv_size);
	sweep->start = &start;
	rc = loopguard_db_reap(env, txn, sweep, func_r);
	sweep->start = NULL;
	if (rc != 0)
		return rc;

	/* An empty position wraps around to the first record. */
	mv.mv_data = (void *)sweep->next_key->data;
	mv.mv_size = sweep->next_key->used;
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

	/* this may be a retry after MDB_MAP_FULL */
	i_zero(&ctx->unreadable);
	k.mv_data = (void *)ctx->db_key->data;
	k.mv_size = ctx->db_key->used;
	rc = mdb_get(txn, env->records_dbi, &k, &v);
	if (rc == 0) {
		if (loopguard_db_record_get(env, &k, &v, ctx->handle,
					    ctx->key, ctx->now, &old,
					    &ctx->unreadable))
			oldp = &old;
	} else if (rc != MDB_NOTFOUND) {
		*func_r = "mdb_get";
		return rc;
	}
	stored = rc == 0;

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
	return loopguard_db_sweep(db, txn, &ctx->sweep, func_r);
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
	int ret;

	if (loopguard_db_check(db, error_r) < 0)
		return -1;

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
	ctx.sweep.max_scan = LOOPGUARD_DB_SWEEP_COUNT;
	ctx.sweep.max_deletes = UINT_MAX;
	ctx.sweep.now = now;
	ctx.sweep.next_key = t_buffer_create(64);
	ctx.sweep.dead = t_buffer_create(256);
	ret = loopguard_db_write(db, now, FALSE, loopguard_db_update_txn,
				 &ctx, error_r);
	loopguard_db_unreadable_log_handle(db->env, handle, &ctx.unreadable);
	if (ret == 0) {
		loopguard_db_unreadable_log(db->env, &ctx.sweep.unreadable,
					    "dropped");
	}
	return ret;
}

int loopguard_db_lookup(struct loopguard_db *db, enum loopguard_db_kind kind,
			const char *handle, const char *key, time_t now,
			pool_t pool, struct loopguard_db_record *record_r,
			const char **error_r)
{
	struct loopguard_db_env *env = db->env;
	struct loopguard_db_record record;
	struct loopguard_db_unreadable unreadable;
	const char *func = "mdb_txn_begin";
	MDB_txn *txn;
	MDB_val k, v;
	buffer_t *db_key;
	int rc, ret = 0;

	i_zero(record_r);
	i_zero(&unreadable);
	if (loopguard_db_check(db, error_r) < 0)
		return -1;

	/* No T_BEGIN here: pool may be a data stack pool of the caller's
	   frame. The temporary allocations are small. */
	db_key = t_buffer_create(128);
	loopguard_db_key_build(env, kind, handle, strlen(handle),
			       key, strlen(key), db_key);
	if (env->delivery == NULL)
		rc = loopguard_db_txn_begin(env, FALSE, &txn);
	else if ((txn = env->delivery->txn) == NULL) {
		*error_r = t_strdup_printf("loopguard db %s: the delivery's "
			"transaction ended after an error", env->path);
		return -1;
	} else {
		/* the delivery sees its own changes */
		rc = 0;
	}
	if (rc == 0) {
		func = "mdb_get";
		k.mv_data = (void *)db_key->data;
		k.mv_size = db_key->used;
		rc = mdb_get(txn, env->records_dbi, &k, &v);
		if (rc == 0 &&
		    loopguard_db_record_get(env, &k, &v, handle, key, now,
					    &record, &unreadable)) {
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
		if (env->delivery == NULL)
			mdb_txn_abort(txn);
	}
	loopguard_db_unreadable_log_handle(env, handle, &unreadable);
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

static int
loopguard_db_purge_batch_txn(struct loopguard_db *db, MDB_txn *txn,
			     void *context, const char **func_r)
{
	return loopguard_db_reap(db->env, txn, context, func_r);
}

/* A full pass in short transactions. When a batch of deletions does not
   fit (deleting needs fresh pages too), the batch shrinks; at a single
   record the map grows, and at the limit the reserve is used. */
static int
loopguard_db_purge_expired(struct loopguard_db *db, time_t now,
			   unsigned int *purged_r, const char **func_r)
{
	struct loopguard_db_reap reap;
	struct loopguard_db_unreadable unreadable;
	buffer_t *start;
	bool reserved = FALSE;
	int rc;

	*purged_r = 0;
	i_zero(&unreadable);
	i_zero(&reap);
	reap.now = now;
	reap.max_scan = LOOPGUARD_DB_PURGE_SCAN_COUNT;
	reap.max_deletes = LOOPGUARD_DB_PURGE_DELETE_COUNT;
	start = buffer_create_dynamic(default_pool, 64);
	reap.start = start;
	reap.next_key = buffer_create_dynamic(default_pool, 64);
	reap.dead = buffer_create_dynamic(default_pool, 1024);
	for (;;) {
		rc = loopguard_db_write_once(db, loopguard_db_purge_batch_txn,
					     &reap, func_r);
		if (rc == MDB_MAP_FULL) {
			if (reap.max_deletes > 1) {
				reap.max_deletes /= 2;
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
		*purged_r += reap.deleted;
		loopguard_db_unreadable_merge(&unreadable, &reap.unreadable);
		if (reap.next_key->used == 0)
			break;
		/* the pages this batch freed are there for the next one */
		if (reap.max_deletes < LOOPGUARD_DB_PURGE_DELETE_COUNT)
			reap.max_deletes *= 2;
		buffer_set_used_size(start, 0);
		buffer_append_buf(start, reap.next_key, 0, SIZE_MAX);
	}
	if (reserved)
		loopguard_db_reserve_release(db->env);
	buffer_free(&start);
	buffer_free(&reap.next_key);
	buffer_free(&reap.dead);
	loopguard_db_unreadable_log(db->env, &unreadable, "dropped");
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
		/* deletions only: LOOPGUARD_DB_FULL cannot happen */
		return loopguard_db_write(db, now, TRUE,
					  loopguard_db_purge_all_txn,
					  purged_r, error_r) < 0 ? -1 : 0;
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
	struct loopguard_db_unreadable unreadable;
};

static bool
loopguard_db_iterate_visit(struct loopguard_db_env *env, const MDB_val *key,
			   const MDB_val *value, void *context)
{
	struct loopguard_db_iterate_context *ictx = context;
	struct loopguard_db_record record;
	const char *error;

	if (!loopguard_db_record_parse(env, key, value, &record, &error)) {
		loopguard_db_unreadable_add(&ictx->unreadable, error);
		return TRUE;
	}
	record.expires = loopguard_db_record_expires(env, &record, ictx->now);
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
	int ret;

	ret = loopguard_db_scan(db, db->env->records_dbi,
				loopguard_db_iterate_visit, &ictx, error_r);
	loopguard_db_unreadable_log(db->env, &ictx.unreadable, "ignoring");
	return ret;
}

/*
 * Log
 */

struct loopguard_db_log_context {
	const string_t *value;
	unsigned int log_size;
	bool cleared;
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

	ctx->cleared = FALSE;
	*func_r = "mdb_cursor_open";
	if ((rc = mdb_cursor_open(txn, env->log_dbi, &cursor)) != 0)
		return rc;
	*func_r = "mdb_cursor_get";
	rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
	if (rc == 0 && k.mv_size != LOOPGUARD_DB_LOG_KEY_SIZE) {
		/* Not a key we wrote: sequence numbers cannot continue after
		   it, and the log is only a convenience, so start it over. */
		ctx->cleared = TRUE;
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
	if (ret == 0 && ctx.cleared) {
		i_warning("loopguard db %s: log had a foreign key, "
			  "cleared the log", db->env->path);
	}
	return ret;
}

/* Same rules for the callback as for loopguard_db_iterate(). Entries are
   visited in the order they were appended, which is time order unless the
   clock jumped back. */
struct loopguard_db_log_iterate_context {
	time_t since;
	loopguard_db_log_callback_t *callback;
	void *context;
	unsigned int unreadable;
};

static bool
loopguard_db_log_iterate_visit(struct loopguard_db_env *env ATTR_UNUSED,
			       const MDB_val *key ATTR_UNUSED,
			       const MDB_val *value, void *context)
{
	struct loopguard_db_log_iterate_context *lctx = context;
	struct loopguard_db_event event;

	if (!loopguard_db_log_event_parse(value, &event)) {
		lctx->unreadable++;
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
	int ret;

	ret = loopguard_db_scan(db, db->env->log_dbi,
				loopguard_db_log_iterate_visit, &lctx,
				error_r);
	if (lctx.unreadable > 0) {
		i_warning("loopguard db %s: ignoring %u unreadable log "
			  "entries", db->env->path, lctx.unreadable);
	}
	return ret;
}
