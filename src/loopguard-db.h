#ifndef LOOPGUARD_DB_H
#define LOOPGUARD_DB_H

/* The per-user state store: one LMDB environment holding keyed records that
   expire, and a capped event log. Only loopguard-db.c talks to LMDB. */

struct loopguard_db;

/* Returned by loopguard_db_update() and loopguard_db_log_append(): the
   store is full of live records: not a transient error. It stays so until
   records expire or max_size is raised, so retrying soon does not help. */
#define LOOPGUARD_DB_FULL (-2)

enum loopguard_db_kind {
	/* ratelimit windows and locks */
	LOOPGUARD_DB_KIND_RATE = 'r',
	/* looptest :checks "duplicate" fingerprints */
	LOOPGUARD_DB_KIND_SEEN = 'd',
};

struct loopguard_db_record;

/* When a record really expires, judged from its payload at now. The stored
   expiry was computed with the clock of the writer: one written while the
   clock was ahead would otherwise live on long after its own rules allow.
   The store uses the earlier of the two for lookups, updates, iteration,
   the sweep and purge. */
typedef time_t
loopguard_db_expires_func_t(const struct loopguard_db_record *record,
			    time_t now);

struct loopguard_db_settings {
	/* Absolute path of the data file; the lock file is "<path>-lock". */
	const char *path;
	/* The map starts small and grows up to this many bytes. */
	uoff_t max_size;
	/* FALSE: the meta page is not fsynced (MDB_NOMETASYNC), so a system
	   crash may lose the last commit but never corrupts the file. */
	bool sync;
	/* Events kept in the capped log (0 keeps none). */
	unsigned int log_size;
	/* Optional; the first open of a file in a process sets it. */
	loopguard_db_expires_func_t *record_expires;
	/* FALSE: a store on a network file system (NFS, SMB/CIFS, AFS, ...)
	   is refused: LMDB's locks and shared map do not work there. */
	bool allow_network_fs;
};

struct loopguard_db_record {
	enum loopguard_db_kind kind;
	const char *handle;
	/* The readable key, even when the stored key is hashed. */
	const char *key;
	/* The record is gone (treated as absent, purged) at this time. */
	time_t expires;
	const unsigned char *payload;
	size_t payload_size;
};

/* Called inside the write transaction with the current record, or NULL when
   there is none (absent, expired, or of an unknown version). Returns TRUE to
   store new_payload with *expires_r, FALSE to leave the store unchanged.
   Setting *expires_r <= now deletes the record. The callback may be called
   again when the transaction is retried (a full or resized map), so it must
   not keep state across calls, and it must not call back into the store. */
typedef bool
loopguard_db_update_callback_t(const struct loopguard_db_record *old,
			       time_t now, buffer_t *new_payload,
			       time_t *expires_r, void *context);

/* Returns 0 to go on, -1 to stop iterating. The record is valid only during
   the call, which runs inside T_BEGIN/T_END in a read transaction: copy what
   is kept, and do not write to the store from here. */
typedef int
loopguard_db_iterate_callback_t(const struct loopguard_db_record *record,
				void *context);

struct loopguard_db_event {
	time_t time;
	/* "looptest" or "ratelimit" */
	const char *test;
	const char *handle;
	const char *key;
	/* space-separated check names (looptest), empty for ratelimit */
	const char *reasons;
	const char *message_id;
	unsigned int count;
	unsigned int window;
	time_t locked_until;
};

/* The same rules as for loopguard_db_iterate_callback_t apply. */
typedef int
loopguard_db_log_callback_t(const struct loopguard_db_event *event,
			    void *context);

/* Opens (creating it 0600 when missing) the environment at set->path,
   unless its directory is on a network file system and
   set->allow_network_fs is FALSE. Within
   one process the same path shares one MDB_env; a handle opened before a
   fork() is never used after it. Every page LMDB could read is checked
   first (loopguard-db-verify.h), also when an idle store is reused and
   its file changed meanwhile. A data file that LMDB rejects as invalid,
   that is shorter than its own meta page claims, or whose pages are
   damaged ("the store is damaged: ...") is renamed to
   "<path>.broken" so that the next open starts afresh, and -1 is returned.
   It is renamed only while no process has the store open; until then -1
   is returned, and a later open tries again. The same applies to a file
   found damaged while in use: every handle of this process on it then
   fails, and has only to be closed. */
/* Returns the name of a network or cluster file system whose statfs()
   f_type is fs_type, or NULL for any other. */
const char *loopguard_db_network_fs_name(long fs_type);
/* For tests only: when set, replaces the f_type statfs() reports for the
   store's directory. */
extern long (*loopguard_db_fs_type_override)(const char *dir);

int loopguard_db_open(const struct loopguard_db_settings *set,
		      struct loopguard_db **db_r, const char **error_r);
void loopguard_db_close(struct loopguard_db **_db);

/* Read-modify-write of one record in one write transaction. Also purges a
   bounded number of expired records. MDB_MAP_FULL: purge expired records
   among a bounded number, grow (up to max_size) and retry once. Handles and keys of any length work. Returns
   0 on success, LOOPGUARD_DB_FULL when max_size is reached with nothing
   expired, -1 on other errors. */
int loopguard_db_update(struct loopguard_db *db, enum loopguard_db_kind kind,
			const char *handle, const char *key, time_t now,
			loopguard_db_update_callback_t *callback,
			void *context, const char **error_r);

/* One delivery's transaction: every test of every script of one delivery
   reads and changes the store in one LMDB write transaction, which is
   committed once after the delivery's actions ran, or aborted. While it
   is open, loopguard_db_update(), _lookup(), _delete() and _log_append()
   on any handle of the same file in this process run inside it: lookups
   see its changes, and changes become visible to others and durable only
   at loopguard_db_delivery_commit(), with one flush. A change that fails
   is undone alone; the delivery's others stay. A change that would leave
   too little room in the map for the commit itself fails as the map being
   full (LOOPGUARD_DB_FULL at the limit), so that the commit does not.

   It holds LMDB's writer lock of the file from begin to commit or abort,
   so other deliveries for the same user wait for it, and a process that
   dies with it open leaves nothing of it behind (LMDB's lock is robust).
   It must therefore end on every path, and must not be left open while
   waiting for anything that may wait for another delivery of the user.
   A process that forked with it open must not end it in the child.

   At most one is open per file and process: a second begin fails.
   Returns 0, or -1 with error_r set. */
struct loopguard_db_delivery;
int loopguard_db_delivery_begin(struct loopguard_db *db,
				struct loopguard_db_delivery **delivery_r,
				const char **error_r);
/* Commits the delivery's changes (nothing is written, and nothing
   flushed, when there were none) and ends it. Returns 0, or -1 when the
   commit failed: the changes are lost then. */
int loopguard_db_delivery_commit(struct loopguard_db_delivery **delivery,
				 const char **error_r);
/* Drops the delivery's changes and ends it. NULL is allowed. */
void loopguard_db_delivery_abort(struct loopguard_db_delivery **delivery);

/* With TRUE, a store whose last handle is closed stays open for the next
   open of the same file in this process (a few of them, least recently
   used closed first). Only for a caller that is never unloaded while the
   process runs. Default FALSE. */
void loopguard_db_keep_idle(bool keep);

/* Returns 1 and fills record_r (allocated from pool) when a live record
   exists, 0 when not, -1 on error. */
int loopguard_db_lookup(struct loopguard_db *db, enum loopguard_db_kind kind,
			const char *handle, const char *key, time_t now,
			pool_t pool, struct loopguard_db_record *record_r,
			const char **error_r);

/* Returns 1 when the record existed and was deleted, 0 when there was none,
   -1 on error. */
int loopguard_db_delete(struct loopguard_db *db, enum loopguard_db_kind kind,
			const char *handle, const char *key,
			const char **error_r);

/* Removes every expired record (all records and the log with all=TRUE). */
int loopguard_db_purge(struct loopguard_db *db, time_t now, bool all,
		       unsigned int *purged_r, const char **error_r);

/* Calls callback for every live record, in key order, in one read
   transaction. Returns 0, or -1 on error or when the callback stopped. */
int loopguard_db_iterate(struct loopguard_db *db, time_t now,
			 loopguard_db_iterate_callback_t *callback,
			 void *context, const char **error_r);

/* Appends an event to the capped log, dropping the oldest beyond
   log_size. Returns 0, LOOPGUARD_DB_FULL or -1 as loopguard_db_update(). */
int loopguard_db_log_append(struct loopguard_db *db,
			    const struct loopguard_db_event *event,
			    const char **error_r);
/* Calls callback for every logged event at or after since, oldest first. */
int loopguard_db_log_iterate(struct loopguard_db *db, time_t since,
			     loopguard_db_log_callback_t *callback,
			     void *context, const char **error_r);

#endif
