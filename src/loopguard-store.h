#ifndef LOOPGUARD_STORE_H
#define LOOPGUARD_STORE_H

/* The per-user state store, as the tests and doveadm use it: windows
   (counting messages per key, with locks), fingerprints (messages seen
   before) and a capped event log. It knows nothing of Sieve.

   loopguard-store.c chooses the driver by the form of the location:
     "/path/to/file"       store-lmdb: one LMDB environment per user
     "redis:host=...:..."  store-redis: one Redis shared by many backends
   A driver implements struct loopguard_store_vfuncs
   (loopguard-store-private.h). Record formats live in loopguard-codec.h,
   the window arithmetic in loopguard-window.h; a driver that can run it
   server-side (Redis) does so with the same rules.

   Every function that can fail returns -1 with *error_r set to a message
   for the administrator's log (it names the store, never a password), or
   LOOPGUARD_STORE_FULL where said. The store logs on the event given at
   open, so its lines carry the user's context. */

#include "loopguard-window.h"

struct loopguard_store;
struct loopguard_store_delivery;

/* The store is full of live records: not a transient error. It stays so
   until records expire or the store is made larger, so retrying soon does
   not help. */
#define LOOPGUARD_STORE_FULL (-2)

#define LOOPGUARD_STORE_FINGERPRINT_SIZE 32

struct loopguard_store_settings {
	/* sieve_loopguard_db, resolved: an absolute path or "redis:..." */
	const char *location;
	/* The user whose state this is: a shared store (Redis) keeps users
	   apart by it. */
	const char *username;
	/* LMDB: the map grows up to this many bytes. */
	uoff_t max_size;
	/* LMDB: FALSE skips the meta page flush (MDB_NOMETASYNC). */
	bool sync;
	/* LMDB: FALSE refuses a store on a network file system. */
	bool allow_network_fs;
	/* Events kept in the capped log (0 keeps none). */
	unsigned int log_size;
	/* Log lines and events of the store are children of this. */
	struct event *event;
};

/* One entry of the capped log: a test that fired. */
struct loopguard_store_event {
	time_t time;
	/* the test's name, e.g. "looptest" */
	const char *test;
	const char *handle;
	const char *key;
	/* space-separated reasons, may be empty */
	const char *reasons;
	const char *message_id;
	unsigned int count;
	unsigned int window;
	time_t locked_until;
};

/* One window, as doveadm loopguard list shows it. */
struct loopguard_store_window {
	const char *handle;
	/* the readable key, also when the stored one is hashed */
	const char *key;
	struct loopguard_window_state state;
};

/* Callbacks return 0 to go on, -1 to stop. What they are given is valid
   only during the call: copy what is kept. They must not call back into
   the store. */
typedef int
loopguard_store_window_callback_t(const struct loopguard_store_window *window,
				  void *context);
typedef int
loopguard_store_log_callback_t(const struct loopguard_store_event *event,
			       void *context);

/* Opens the store at set->location (creating it when missing). */
int loopguard_store_open(const struct loopguard_store_settings *set,
			 struct loopguard_store **store_r,
			 const char **error_r);
void loopguard_store_close(struct loopguard_store **store);

/* Whether the store at set->location exists, so that looking at a user
   (doveadm -A) does not create one. Returns 1, 0 or -1; after -1, errno
   is EACCES when access was denied, which no retry cures. */
int loopguard_store_exists(const struct loopguard_store_settings *set,
			   const char **error_r);

/* With TRUE, what a store holds open (an LMDB environment, a Redis
   connection) stays open after its last close, for the next open of the
   same store in this process. Only for a caller that is never unloaded
   while the process runs. Default FALSE. */
void loopguard_store_keep_idle(bool keep);

/*
 * The delivery
 */

/* Every test of every script of one delivery works in one delivery of the
   store: its changes become visible to others and durable together, once,
   at loopguard_store_delivery_commit(), and are dropped by _abort(). A
   delivery that fails is not counted and never makes its retry a
   duplicate. While it is open, the functions below on the same store run
   inside it.

   It must end on every path, and must not stay open while waiting for
   anything that may wait for another delivery of the user (LMDB holds the
   user's writer lock for its span). At most one is open per store. */
int loopguard_store_delivery_begin(struct loopguard_store *store,
				   struct loopguard_store_delivery **delivery_r,
				   const char **error_r);
/* Returns 0, or -1 when the changes could not be made durable. */
int loopguard_store_delivery_commit(struct loopguard_store_delivery **delivery,
				    const char **error_r);
/* NULL is allowed. */
void loopguard_store_delivery_abort(struct loopguard_store_delivery **delivery);

/*
 * Windows
 */

/* Evaluates one message (message_hash) against the window of handle/key
   by loopguard_window_apply()'s rules and, when record is TRUE, counts it:
   the check and the count are one atomic step, so that counting stays
   exact when many deliveries for the user run at once. Returns 0,
   LOOPGUARD_STORE_FULL or -1. */
int loopguard_store_window_check(struct loopguard_store *store,
				 const char *handle, const char *key,
				 const struct loopguard_window_params *params,
				 const unsigned char message_hash[
					LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE],
				 time_t now, bool record,
				 struct loopguard_window_result *result_r,
				 const char **error_r);

/* Calls callback for every live window (of handle only, unless NULL).
   Returns 0, or -1 on error or when the callback stopped. */
int loopguard_store_window_iterate(struct loopguard_store *store,
				   const char *handle, time_t now,
				   loopguard_store_window_callback_t *callback,
				   void *context, const char **error_r);

/* Forgets the window of handle/key, its lock included. Returns 1 when it
   existed, 0 when not, -1 on error. */
int loopguard_store_window_delete(struct loopguard_store *store,
				  const char *handle, const char *key,
				  const char **error_r);

/*
 * Fingerprints
 */

/* Sets *seen_r to whether the fingerprint was marked less than period
   seconds before now, and marks it at now for period seconds (a sighting
   of a loop that goes on restarts its period). The mark is made durable by
   the delivery's commit only. Returns 0, LOOPGUARD_STORE_FULL or -1. */
int loopguard_store_fingerprint_check(struct loopguard_store *store,
				      const unsigned char fingerprint[
					LOOPGUARD_STORE_FINGERPRINT_SIZE],
				      unsigned int period, time_t now,
				      bool *seen_r, const char **error_r);

/*
 * The log
 */

/* Appends an event to the capped log, dropping the oldest beyond
   log_size. Returns 0, LOOPGUARD_STORE_FULL or -1. */
int loopguard_store_log_append(struct loopguard_store *store,
			       const struct loopguard_store_event *event,
			       const char **error_r);
/* Calls callback for every logged event at or after since, oldest first. */
int loopguard_store_log_iterate(struct loopguard_store *store, time_t since,
				loopguard_store_log_callback_t *callback,
				void *context, const char **error_r);

/*
 * Maintenance
 */

/* Removes every expired record; with all, every record and the log.
   *purged_r is the number removed. */
int loopguard_store_purge(struct loopguard_store *store, time_t now, bool all,
			  unsigned int *purged_r, const char **error_r);

#endif
