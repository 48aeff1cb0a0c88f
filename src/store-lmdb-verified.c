/* The data file's last state known to be sound, shared between processes. */

#include "lib.h"
#include "byteorder.h"
#include "store-lmdb-verified.h"

#include <sys/stat.h>
#include <sys/xattr.h>

/* An extended attribute, not a file of its own: it goes wherever the inode
   goes and needs no descriptor, and the store stays one data file and its
   lock file. The lock file has no room of its own for it: LMDB sizes its
   reader table to the whole lock file. Setting it changes the inode's
   ctime, not its mtime. */
#define STORE_LMDB_VERIFIED_XATTR "user.loopguard.verified"
#define STORE_LMDB_VERIFIED_VERSION 1
/* version; dev, ino, size, mtime seconds, txnid; mtime nanoseconds */
#define STORE_LMDB_VERIFIED_SIZE (1 + 5 * 8 + 4)

int store_lmdb_file_state_get(int fd, uint64_t txnid,
			      struct store_lmdb_file_state *state_r)
{
			      struct stat st;

	i_zero(state_r);
	if (fstat(fd, &st) < 0)
		return -1;
	state_r->dev = st.st_dev;
	state_r->ino = st.st_ino;
	state_r->size = st.st_size;
	state_r->mtime = st.st_mtim;
	state_r->txnid = txnid;
	return 0;
}

bool store_lmdb_file_state_equals(const struct store_lmdb_file_state *a,
				  const struct store_lmdb_file_state *b)
{
				  return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
		a->mtime.tv_sec == b->mtime.tv_sec &&
		a->mtime.tv_nsec == b->mtime.tv_nsec &&
		a->txnid == b->txnid;
}

static void
store_lmdb_verified_encode(const struct store_lmdb_file_state *state,
			   unsigned char buf[STORE_LMDB_VERIFIED_SIZE])
{
			   buf[0] = STORE_LMDB_VERIFIED_VERSION;
	cpu64_to_be_unaligned((uint64_t)state->dev, buf + 1);
	cpu64_to_be_unaligned((uint64_t)state->ino, buf + 9);
	cpu64_to_be_unaligned((uint64_t)state->size, buf + 17);
	cpu64_to_be_unaligned((uint64_t)(int64_t)state->mtime.tv_sec,
			      buf + 25);
	cpu64_to_be_unaligned(state->txnid, buf + 33);
	cpu32_to_be_unaligned((uint32_t)state->mtime.tv_nsec, buf + 41);
}

bool store_lmdb_verified_matches(int fd,
				 const struct store_lmdb_file_state *state)
{
				 unsigned char stored[STORE_LMDB_VERIFIED_SIZE + 1];
	unsigned char expected[STORE_LMDB_VERIFIED_SIZE];
	ssize_t ret;

	/* one byte more than ours: a longer value is not ours either */
	ret = fgetxattr(fd, STORE_LMDB_VERIFIED_XATTR, stored,
			sizeof(stored));
	if (ret != STORE_LMDB_VERIFIED_SIZE)
		return FALSE;
	store_lmdb_verified_encode(state, expected);
	return memcmp(stored, expected, sizeof(expected)) == 0;
}

void store_lmdb_verified_set(int fd,
			     const struct store_lmdb_file_state *state)
{
			     unsigned char buf[STORE_LMDB_VERIFIED_SIZE];

	store_lmdb_verified_encode(state, buf);
	/* one value replaced as a whole: a reader sees the old or the new */
	(void)fsetxattr(fd, STORE_LMDB_VERIFIED_XATTR, buf, sizeof(buf), 0);
}
