/* The LMDB driver's defences: stores it must not use (on a network file
   system), and damaged files, which are moved aside so that the next open
   starts afresh instead of failing, or crashing, for ever. */

#include "lib.h"
#include "fd-util.h"

#include "store-lmdb-private.h"
#include "store-lmdb-verify.h"

#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef __linux__
#  include <sys/vfs.h>
#endif

const char *
store_lmdb_mdb_error(const char *path, const char *func, int rc)
{
	return t_strdup_printf("loopguard store %s: %s failed: %s",
			       path, func, mdb_strerror(rc));
}

bool store_lmdb_rc_is_corruption(int rc)
{
	return rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH ||
		rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND;
}

const char *
store_lmdb_lock_path(const char *path)
{
	return t_strconcat(path, "-lock", NULL);
}

/* Whether fd is the file the lock path names now: a file moved aside
   takes its lock file with it. Returns 1 if so, 0 if not, -1 on error. */
int
store_lmdb_lock_is_current(const char *path, int fd, const char **error_r)
{
	const char *lock_path = store_lmdb_lock_path(path);
	struct stat st_fd, st_path;

	if (fstat(fd, &st_fd) < 0) {
		*error_r = t_strdup_printf("loopguard store %s: fstat(%s) failed: %m",
					   path, lock_path);
		return -1;
	}
	if (stat(lock_path, &st_path) < 0) {
		if (errno == ENOENT)
			return 0;
		*error_r = t_strdup_printf("loopguard store %s: stat(%s) failed: %m",
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
   store_lmdb_env_open() notices. Closes *lock_fd. */
const char *
store_lmdb_move_aside(const char *path, int *lock_fd, const char *reason)
{
	const char *broken_path = t_strconcat(path, ".broken", NULL);
	const char *lock_path = store_lmdb_lock_path(path);
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
				"loopguard store %s: %s; the store is broken "
				"and will be moved aside when no delivery "
				"uses it", path, reason);
		} else {
			error = t_strdup_printf(
				"loopguard store %s: %s; fcntl(%s) failed: %m",
				path, reason, lock_path);
		}
		i_close_fd(lock_fd);
		return error;
	}
	ret = store_lmdb_lock_is_current(path, *lock_fd, &error);
	if (ret <= 0) {
		i_close_fd(lock_fd);
		if (ret < 0)
			return t_strdup_printf("%s (%s)", error, reason);
		/* another process moved it while we were looking */
		return t_strdup_printf("loopguard store %s: %s; another process "
				       "has moved it aside", path, reason);
	}

	if (rename(path, broken_path) < 0 && errno != ENOENT) {
		error = t_strdup_printf("loopguard store %s: %s; "
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
	return t_strdup_printf("loopguard store %s: %s; moved it to %s, "
			       "the next open starts a fresh store%s",
			       path, reason, broken_path, lock_error);
}

/* Turns a failed MDB call into an error string, and takes the environment
   (and the file, when the failure says it is damaged) out of use. */
const char *
store_lmdb_failed(struct store_lmdb_env *env, const char *func, int rc)
{
	if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND) {
		/* Closes every handle's view of the file, and this process's
		   locks on it, so that only other processes can keep the
		   file from moving. */
		store_lmdb_env_shut(env);
		return store_lmdb_move_aside(env->path, &env->lock_fd,
			t_strdup_printf("%s failed: %s", func,
					mdb_strerror(rc)));
	}
	if (rc == MDB_PANIC) {
		/* LMDB wants this env shut down; the file itself may be
		   fine, so it stays where it is. */
		store_lmdb_env_shut(env);
		i_close_fd(&env->lock_fd);
	}
	return store_lmdb_mdb_error(env->path, func, rc);
}

/* Checks every page LMDB can reach before LMDB reads it through the map
   (see store-lmdb-verify.h): a damaged page would crash the process,
   not fail a call. A file still in a state known to be sound is not read
   again. A damaged file is moved aside like a garbage file. Returns 0, or
   -1 (with the environment shut when the file is damaged). */
int store_lmdb_env_verify(struct store_lmdb_env *env, const char **error_r)
{
	struct store_lmdb_file_state state;
	const char *reason;
	MDB_txn *txn;
	int fd, rc, ret;

	/* the read transaction keeps writers off the pages being read */
	if ((rc = store_lmdb_txn_begin(env, FALSE, &txn)) != 0) {
		*error_r = store_lmdb_failed(env, "mdb_txn_begin", rc);
		return -1;
	}
	if ((rc = mdb_env_get_fd(env->env, &fd)) != 0) {
		mdb_txn_abort(txn);
		*error_r = store_lmdb_mdb_error(env->path,
						"mdb_env_get_fd", rc);
		return -1;
	}
	/* The state is taken before the walk: a change during it, even of
	   a page already read, makes the recorded state a stale one. */
	if (store_lmdb_env_file_sound(env, mdb_txn_id(txn), &state)) {
		mdb_txn_abort(txn);
		env->known = state;
		return 0;
	}
	ret = store_lmdb_verify(fd, store_lmdb_page_size(), &reason);
	mdb_txn_abort(txn);
	if (ret > 0) {
		if (state.ino != 0) {
			env->known = state;
			store_lmdb_verified_set(fd, &state);
		}
		return 0;
	}
	if (ret < 0) {
		*error_r = t_strdup_printf("loopguard store %s: %s",
					   env->path, reason);
		return -1;
	}
	store_lmdb_env_shut(env);
	*error_r = store_lmdb_move_aside(env->path, &env->lock_fd,
		t_strdup_printf("the store is %s", reason));
	return -1;
}

/* statfs() f_type values (linux/magic.h, not every one in every version's
   header) of file systems where LMDB's fcntl() locks, robust mutexes in a
   shared lock file or a coherent shared map cannot be relied on. */
static const struct {
	long type;
	const char *name;
} store_lmdb_network_fs[] = {
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

long (*store_lmdb_fs_type_override)(const char *dir) = NULL;

const char *store_lmdb_network_fs_name(long fs_type)
{
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(store_lmdb_network_fs); i++) {
		/* f_type is signed on some architectures */
		if ((uint32_t)store_lmdb_network_fs[i].type ==
		    (uint32_t)fs_type)
			return store_lmdb_network_fs[i].name;
	}
	return NULL;
}

/* LMDB does not work on a network file system: its locks and its shared
   map would not exclude writers on other hosts, and the file would be
   corrupted. The directory is checked, as the file may not exist yet. */
int
store_lmdb_check_local(const struct loopguard_store_settings *set,
		       const char **error_r)
{
	const char *dir, *p, *fs_name;
	long fs_type;

	if (set->allow_network_fs)
		return 0;
	p = strrchr(set->location, '/');
	dir = p == set->location ? "/" : t_strdup_until(set->location, p);
	if (store_lmdb_fs_type_override != NULL)
		fs_type = store_lmdb_fs_type_override(dir);
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
	fs_name = store_lmdb_network_fs_name(fs_type);
	if (fs_name == NULL)
		return 0;
	*error_r = t_strdup_printf(
		"loopguard store %s: refusing a store on a network file system "
		"(%s): LMDB needs a local file system; move it with "
		"sieve_loopguard_db, or set "
		"sieve_loopguard_db_allow_network_fs = yes if this file "
		"system is known to be safe for LMDB", set->location, fs_name);
	return -1;
}

