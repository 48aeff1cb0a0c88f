#ifndef STORE_LMDB_H
#define STORE_LMDB_H

/* The LMDB driver's record layer, below the store API: keyed records that
   expire, read and changed by callbacks. store-lmdb.c builds the store's
   operations on it; unit tests use it to reach the driver's mechanics
   (map sizing, recovery, hashed keys, old versions) directly. Every
   function here takes a store opened by loopguard_store_open() on a path.

   One environment per data file and process is shared by every store
   open on it; a store opened before a fork() is never used after it.
   Every page LMDB could read is checked first (store-lmdb-verify.h), also
   when an idle environment is reused, unless the file is still in a state
   known to be sound (store-lmdb-verified.h). A data file that LMDB
   rejects as invalid, that is shorter than its own meta page claims, or
   whose pages are damaged is renamed to "<path>.broken" so that the next
   open starts afresh. It is renamed only
   while no process has it open; until then opens fail, and a later open
   tries again. A file found damaged while in use makes every store of
   this process on it fail; they have only to be closed. A directory on a
   network file system is refused unless allow_network_fs is set. */

#include "loopguard-codec.h"

struct loopguard_store;

/* Called inside the write transaction with the current record, or NULL when
   there is none (absent, expired, or unreadable). Returns TRUE to store
   new_payload with *expires_r, FALSE to leave the store unchanged. Setting
   *expires_r <= now deletes the record. The callback may be called again
   when the transaction is retried (a full or resized map), so it must not
   keep state across calls besides its result, and it must not call back
   into the store. old and its strings are valid only during the call. */
typedef bool
store_lmdb_update_callback_t(const struct loopguard_codec_record *old,
			     time_t now, buffer_t *new_payload,
			     time_t *expires_r, void *context);

/* Returns 0 to go on, -1 to stop iterating. The record is valid only during
   the call, which runs inside T_BEGIN/T_END in a read transaction: copy what
   is kept, and do not write to the store from here. */
typedef int
store_lmdb_iterate_callback_t(const struct loopguard_codec_record *record,
			      void *context);

/* Read-modify-write of one record in one write transaction (the
   delivery's, when one is open). Also purges a bounded number of expired
   records. MDB_MAP_FULL: purge expired records among a bounded number,
   grow (up to max_size) and retry once. Handles and keys of any length
   work. Returns 0, LOOPGUARD_STORE_FULL when max_size is reached with
   nothing expired, -1 on other errors. No T_BEGIN inside: the callback
   may allocate from the caller's data stack frame. */
int store_lmdb_update(struct loopguard_store *store,
		      enum loopguard_codec_kind kind,
		      const char *handle, const char *key, time_t now,
		      store_lmdb_update_callback_t *callback,
		      void *context, const char **error_r);

/* Returns 1 and fills record_r (allocated from pool) when a live record
   exists, 0 when not, -1 on error. Inside a delivery it sees the
   delivery's changes. */
int store_lmdb_lookup(struct loopguard_store *store,
		      enum loopguard_codec_kind kind,
		      const char *handle, const char *key, time_t now,
		      pool_t pool, struct loopguard_codec_record *record_r,
		      const char **error_r);

/* Returns 1 when the record existed and was deleted, 0 when there was none,
   -1 on error. */
int store_lmdb_delete(struct loopguard_store *store,
		      enum loopguard_codec_kind kind,
		      const char *handle, const char *key,
		      const char **error_r);

/* Calls callback for every live record at now, in key order, in one read
   transaction. Returns 0, or -1 on error or when the callback stopped. */
int store_lmdb_iterate(struct loopguard_store *store, time_t now,
		       store_lmdb_iterate_callback_t *callback,
		       void *context, const char **error_r);

/* Returns the name of a network or cluster file system whose statfs()
   f_type is fs_type, or NULL for any other. */
const char *store_lmdb_network_fs_name(long fs_type);
/* For tests only: when set, replaces the f_type statfs() reports for the
   store's directory. */
extern long (*store_lmdb_fs_type_override)(const char *dir);

/* How many times this process has checked, after a change inside a
   delivery, that the commit still has room. */
unsigned int store_lmdb_delivery_room_checks(void);

#endif
