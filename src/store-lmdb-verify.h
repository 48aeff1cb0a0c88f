#ifndef STORE_LMDB_VERIFY_H
#define STORE_LMDB_VERIFY_H

/* A structural check of an LMDB data file, read with pread(), before LMDB
   is let at it through its map. LMDB trusts its pages blindly: a node
   offset past the page, a child page beyond the file, a wrong tree depth
   or a huge overflow page count makes it read or copy outside the page,
   which is a SIGBUS or SIGSEGV, or worse, a heap overflow, not an error.
   Knows LMDB's on-disk format (data version 1, as in 0.9.x) without its
   header. */

/* Checks the tree LMDB would use now: the meta page with the newest
   transaction, and every page reachable from it (branch and leaf pages of
   the main database, of the named databases in it and of the free list,
   and their overflow pages). Run it inside a read transaction, so that no
   writer reuses the pages being read. Every page is read at most once.
   Returns 1 when the file is sound, 0 when it is damaged, with the reason
   in *reason_r, or -1 when reading it failed (*reason_r is the error). */
int store_lmdb_verify(int fd, size_t page_size, const char **reason_r);

#endif
