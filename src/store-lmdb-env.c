/* The LMDB driver's environments: one per data file and process, shared
   by the stores open on it, kept idle for the next delivery, and never
   touched again after a fork(). */

#include "lib.h"
#include "buffer.h"
#include "llist.h"
#include "fd-util.h"

#include "store-lmdb-private.h"

#include <fcntl.h>
#include <unistd.h>

/* Larger than the lock table LMDB sizes for its default 126 readers. */
#define STORE_LMDB_LOCK_FILE_SIZE (16 * 1024)
/* Opens retried when the lock file was replaced while LMDB opened it. */
#define STORE_LMDB_MAX_OPEN_RETRIES 3

/* Environments no store uses are kept open for the next delivery of the
   same user in this process, up to this many, and only while their maps
   together stay within this: mapped address space counts against the
   process's vsz_limit. It holds one store of the default size, which is
   the one a flood of mail to one user fills: reopening it would cost each
   of those deliveries a map and more than the rest of its store work. */
#define STORE_LMDB_MAX_IDLE_ENVS 2
#define STORE_LMDB_MAX_IDLE_MAPPED (64 * 1024 * 1024)
static bool store_lmdb_idle_allowed = FALSE;

static struct store_lmdb_env *store_lmdb_envs = NULL;
/* environments inherited over fork(), never used again */
static struct store_lmdb_env *store_lmdb_inherited_envs = NULL;

static struct store_lmdb_env *store_lmdb_env_find(const char *path)
{
	struct store_lmdb_env *env;

	for (env = store_lmdb_envs; env != NULL; env = env->next) {
		if (strcmp(env->path, path) == 0)
			return env;
	}
	return NULL;
}

static void store_lmdb_env_unregister(struct store_lmdb_env *env)
{
	if (!env->registered)
		return;
	DLLIST_REMOVE(&store_lmdb_envs, env);
	env->registered = FALSE;
}

/* An environment inherited over fork() is never closed: mdb_env_close()
   would release the parent's reader slots. It stays listed, unused, so that
   the parent's memory is not taken for a leak; its mapping and descriptors
   go away with this process. */
static void store_lmdb_env_keep_inherited(struct store_lmdb_env *env)
{
	if (env->inherited)
		return;
	store_lmdb_env_unregister(env);
	DLLIST_PREPEND(&store_lmdb_inherited_envs, env);
	env->inherited = TRUE;
}

static void store_lmdb_env_free(struct store_lmdb_env **_env)
{
	struct store_lmdb_env *env = *_env;

	*_env = NULL;
	i_assert(env->refcount == 0);

	if (env->pid != getpid()) {
		store_lmdb_env_keep_inherited(env);
		return;
	}
	store_lmdb_env_unregister(env);
	/* the environment first: closing the lock file drops its locks */
	if (env->env != NULL)
		mdb_env_close(env->env);
	i_close_fd(&env->lock_fd);
	buffer_free(&env->room_position);
	i_free(env->path);
	i_free(env);
}

/* A fresh environment of the path must not share this process's locks
   with one still open. */
void store_lmdb_env_shut(struct store_lmdb_env *env)
{
	env->broken = TRUE;
	store_lmdb_env_unregister(env);
	if (env->delivery != NULL && env->delivery->txn != NULL) {
		mdb_txn_abort(env->delivery->txn);
		env->delivery->txn = NULL;
	}
	if (env->env != NULL) {
		mdb_env_close(env->env);
		env->env = NULL;
	}
}

int store_lmdb_check(struct store_lmdb *store, const char **error_r)
{
	if (store->env->pid != getpid()) {
		*error_r = t_strdup_printf(
			"loopguard store %s: store opened before fork() "
			"used in the child", store->env->path);
		return -1;
	}
	if (store->env->broken) {
		*error_r = t_strdup_printf(
			"loopguard store %s: the store failed and was closed; "
			"open it again", store->env->path);
		return -1;
	}
	return 0;
}

bool store_lmdb_env_file_sound(struct store_lmdb_env *env, uint64_t txnid,
			       struct store_lmdb_file_state *state_r)
{
	struct store_lmdb_file_state state;
	int fd;

	if (state_r == NULL)
		state_r = &state;
	if (mdb_env_get_fd(env->env, &fd) != 0 ||
	    store_lmdb_file_state_get(fd, txnid, state_r) < 0) {
		i_zero(state_r);
		return FALSE;
	}
	return store_lmdb_file_state_equals(state_r, &env->known) ||
		store_lmdb_verified_matches(fd, state_r);
}

static int
store_lmdb_env_open_dbis(struct store_lmdb_env *env, const char **error_r)
{
	const char *func = "mdb_txn_begin";
	MDB_txn *txn;
	int rc;

	rc = store_lmdb_txn_begin(env, TRUE, &txn);
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
			rc = store_lmdb_txn_commit(env, txn);
		}
	}
	if (rc != 0) {
		*error_r = store_lmdb_failed(env, func, rc);
		return -1;
	}
	return 0;
}

static int
store_lmdb_lock_open(const char *path, int *fd_r, const char **error_r)
{
	const char *lock_path = store_lmdb_lock_path(path);
	int ret;

	*fd_r = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (*fd_r < 0) {
		*error_r = t_strdup_printf("loopguard store %s: open(%s) failed: %m",
					   path, lock_path);
		return -1;
	}
	/* LMDB extends the lock file with ftruncate() and writes to it
	   through a shared mapping: on a full file system that write would
	   be a SIGBUS. Allocating the blocks first turns it into ENOSPC. */
	if ((ret = posix_fallocate(*fd_r, 0,
				   STORE_LMDB_LOCK_FILE_SIZE)) != 0) {
		errno = ret;
		*error_r = t_strdup_printf("loopguard store %s: "
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
store_lmdb_env_open_mdb(const struct loopguard_store_settings *set,
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
	if (store_lmdb_lock_open(set->location, lock_fd, error_r) < 0)
		return -1;
	if ((rc = mdb_env_create(&mdb)) != 0) {
		*error_r = store_lmdb_mdb_error(set->location,
						"mdb_env_create", rc);
		i_close_fd(lock_fd);
		return -1;
	}
	if ((rc = mdb_env_set_maxdbs(mdb, 3)) != 0)
		func = "mdb_env_set_maxdbs";
	else if ((rc = mdb_env_set_mapsize(mdb, initial_size)) != 0)
		func = "mdb_env_set_mapsize";
	else if ((rc = mdb_env_open(mdb, set->location, flags, 0600)) != 0)
		func = "mdb_env_open";
	if (rc != 0) {
		mdb_env_close(mdb);
		if (store_lmdb_rc_is_corruption(rc)) {
			*error_r = store_lmdb_move_aside(set->location, lock_fd,
				t_strdup_printf("not a usable LMDB file: %s",
						mdb_strerror(rc)));
		} else {
			*error_r = store_lmdb_mdb_error(set->location, func, rc);
			i_close_fd(lock_fd);
		}
		return -1;
	}

	/* A file moved aside while LMDB waited for its lock leaves LMDB
	   with a lock file nobody else uses any more. */
	ret = store_lmdb_lock_is_current(set->location, *lock_fd, error_r);
	if (ret <= 0) {
		mdb_env_close(mdb);
		i_close_fd(lock_fd);
		return ret;
	}
	*mdb_r = mdb;
	return 1;
}

static int
store_lmdb_env_open(const struct loopguard_store_settings *set,
		    struct store_lmdb_env **env_r, const char **error_r)
{
	struct store_lmdb_map_sizes sizes;
	struct store_lmdb_env *env;
	MDB_env *mdb;
	struct stat st;
	mdb_filehandle_t fd;
	unsigned int i;
	int lock_fd, rc, ret, dead;

	store_lmdb_map_sizes_get(set->max_size, &sizes);
	for (i = 0;; i++) {
		ret = store_lmdb_env_open_mdb(set, sizes.initial, &mdb,
					      &lock_fd, error_r);
		if (ret != 0)
			break;
		if (i == STORE_LMDB_MAX_OPEN_RETRIES) {
			*error_r = t_strdup_printf(
				"loopguard store %s: the lock file keeps being "
				"replaced while opening it", set->location);
			return -1;
		}
	}
	if (ret < 0)
		return -1;

	/* Slots left behind by crashed deliveries would pin old pages
	   forever and make the file grow. */
	(void)mdb_reader_check(mdb, &dead);

	env = i_new(struct store_lmdb_env, 1);
	env->path = i_strdup(set->location);
	env->env = mdb;
	env->lock_fd = lock_fd;
	env->pid = getpid();
	env->max_size = set->max_size;
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
	if ((rc = store_lmdb_map_adopt(env)) != 0) {
		*error_r = store_lmdb_mdb_error(set->location,
						"mdb_env_set_mapsize", rc);
		store_lmdb_env_free(&env);
		return -1;
	}
	if (store_lmdb_env_verify(env, error_r) < 0 ||
	    store_lmdb_env_open_dbis(env, error_r) < 0) {
		store_lmdb_env_free(&env);
		return -1;
	}
	*env_r = env;
	return 0;
}

/* An idle environment serves a new open only when the path still names the
   file it has open (not moved aside or replaced) and the limits agree. */
static bool
store_lmdb_env_reusable(const struct store_lmdb_env *env,
			const struct loopguard_store_settings *set)
{
	struct stat st;

	if (env->max_size != set->max_size)
		return FALSE;
	if (stat(set->location, &st) < 0)
		return FALSE;
	return st.st_dev == env->dev && st.st_ino == env->ino;
}

static size_t store_lmdb_env_map_size(struct store_lmdb_env *env)
{
	MDB_envinfo info;

	if (mdb_env_info(env->env, &info) != 0)
		return STORE_LMDB_MAX_IDLE_MAPPED + 1;
	return I_MIN(info.me_mapsize, STORE_LMDB_MAX_IDLE_MAPPED + 1);
}

/* Keeps an environment no store uses open, most recently used first, and
   closes the least recently used ones beyond STORE_LMDB_MAX_IDLE_ENVS or
   STORE_LMDB_MAX_IDLE_MAPPED: opening a store costs more than the check
   it serves. env's own map is within the limit, so env stays. */
static void store_lmdb_env_make_idle(struct store_lmdb_env *env)
{
	struct store_lmdb_env *e, *last_idle;
	unsigned int idle;
	size_t mapped;

	DLLIST_REMOVE(&store_lmdb_envs, env);
	DLLIST_PREPEND(&store_lmdb_envs, env);
	for (;;) {
		idle = 0;
		mapped = 0;
		last_idle = NULL;
		for (e = store_lmdb_envs; e != NULL; e = e->next) {
			if (e->refcount == 0) {
				idle++;
				mapped += store_lmdb_env_map_size(e);
				last_idle = e;
			}
		}
		if (idle <= STORE_LMDB_MAX_IDLE_ENVS &&
		    mapped <= STORE_LMDB_MAX_IDLE_MAPPED)
			break;
		i_assert(last_idle != env);
		store_lmdb_env_free(&last_idle);
	}
}

void store_lmdb_env_keep_idle(bool keep)
{
	struct store_lmdb_env *env, *next;

	store_lmdb_idle_allowed = keep;
	if (keep)
		return;
	for (env = store_lmdb_envs; env != NULL; env = next) {
		next = env->next;
		if (env->refcount == 0)
			store_lmdb_env_free(&env);
	}
}

/* Finds the environment of set->location, reuses an idle one or opens a
   new one, and takes a reference to it. */
int store_lmdb_env_get(const struct loopguard_store_settings *set,
		       struct store_lmdb_env **env_r, const char **error_r)
{
	struct store_lmdb_env *env;
	unsigned int flags;

	env = store_lmdb_env_find(set->location);
	if (env != NULL && env->pid != getpid()) {
		/* Inherited over fork(): its locks and reader slots are the
		   parent's. Leave it alone and open our own, but keep it
		   reachable: it is the parent's memory, not a leak. */
		store_lmdb_env_keep_inherited(env);
		env = NULL;
	}
	if (env != NULL && env->refcount == 0 &&
	    !store_lmdb_env_reusable(env, set)) {
		store_lmdb_env_free(&env);
		env = NULL;
	}
	if (env != NULL && env->refcount == 0 &&
	    store_lmdb_env_verify(env, error_r) < 0) {
		/* damaged while idle: moved aside, or it could not be read */
		store_lmdb_env_free(&env);
		return -1;
	}
	if (env == NULL) {
		if (store_lmdb_check_local(set, error_r) < 0 ||
		    store_lmdb_env_open(set, &env, error_r) < 0)
			return -1;
		DLLIST_PREPEND(&store_lmdb_envs, env);
		env->registered = TRUE;
	} else if (env->refcount == 0) {
		/* an idle environment takes this open's durability */
		(void)mdb_env_set_flags(env->env, MDB_NOMETASYNC,
					set->sync ? 0 : 1);
	} else if (set->sync &&
		   mdb_env_get_flags(env->env, &flags) == 0 &&
		   (flags & MDB_NOMETASYNC) != 0) {
		/* one store asking for durability gets it for all */
		(void)mdb_env_set_flags(env->env, MDB_NOMETASYNC, 0);
	}
	env->refcount++;
	*env_r = env;
	return 0;
}

/* Drops a reference; the last one closes the environment, or keeps it
   idle for the next open. */
void store_lmdb_env_release(struct store_lmdb_env **_env)
{
	struct store_lmdb_env *env = *_env;
	MDB_envinfo info;

	*_env = NULL;
	i_assert(env->refcount > 0);
	if (--env->refcount > 0)
		return;
	if (!store_lmdb_idle_allowed || env->broken ||
	    env->pid != getpid() || !env->registered ||
	    mdb_env_info(env->env, &info) != 0 ||
	    info.me_mapsize > STORE_LMDB_MAX_IDLE_MAPPED)
		store_lmdb_env_free(&env);
	else
		store_lmdb_env_make_idle(env);
}
