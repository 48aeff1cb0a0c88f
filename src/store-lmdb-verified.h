#ifndef STORE_LMDB_VERIFIED_H
#define STORE_LMDB_VERIFIED_H

/* The state of a store's data file last known to be sound, shared by all
   processes through an extended attribute of the file, so that an opener
   whose file is still in that state can skip the page walk of
   store-lmdb-verify.h.

   A state is the file's device, inode, size and modification time, and
   the id of the last transaction committed to it. The file is sound in a
   state that was walked, or that a writer reached from a sound state by
   an LMDB commit, since LMDB writes only pages of its own. Whatever else
   changes the file changes its modification time or size (damage is
   written some time after the last commit), and a commit of someone who
   recorded nothing changes the transaction id: both mean walking again.
   Nothing here is flushed: a lost record only costs one walk. */

struct store_lmdb_file_state {
	dev_t dev;
	ino_t ino;
	uoff_t size;
	struct timespec mtime;
	uint64_t txnid;
};

/* Fills state_r from fstat(fd) and txnid. Returns 0, or -1 with errno. */
int store_lmdb_file_state_get(int fd, uint64_t txnid,
			      struct store_lmdb_file_state *state_r);
bool store_lmdb_file_state_equals(const struct store_lmdb_file_state *a,
				  const struct store_lmdb_file_state *b);

/* Whether state is the one recorded as sound on fd. FALSE also when no
				  state is recorded, the record is unreadable, or the file system has no
				  extended attributes. */
bool store_lmdb_verified_matches(int fd,
				 const struct store_lmdb_file_state *state);
/* Records state as sound on fd, replacing the previous record. Failing
				 is harmless (the next opener walks the file) and not reported. */
void store_lmdb_verified_set(int fd,
			     const struct store_lmdb_file_state *state);

#endif
