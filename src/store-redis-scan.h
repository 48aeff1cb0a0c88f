#ifndef LOOPGUARD_REDIS_SCAN_H
#define LOOPGUARD_REDIS_SCAN_H

/* Walking many keys of Redis without blocking it (SCAN, never KEYS), for
   doveadm's list and purge. */

#include "store-redis-conn.h"

/* Keys asked for per SCAN step, and per batch of _batches(). */
#define LOOPGUARD_REDIS_SCAN_COUNT 500

/* Adds every key matching the SCAN pattern to keys_r, each once (SCAN may
   return a key twice), allocated from the data stack. Returns 0 or -1. */
int loopguard_redis_scan(struct loopguard_redis_conn *conn,
			 const char *pattern,
			 ARRAY_TYPE(const_string) *keys_r,
			 const char **error_r);

/* keys[i] goes with reply->element[i] (MGET), or reply is the count
   (UNLINK). Returns 0 to go on, -1 with *error_r set to stop. */
typedef int loopguard_redis_batch_callback_t(const char *const *keys,
					     const redisReply *reply,
					     void *context,
					     const char **error_r);

/* Runs "command key..." (MGET, UNLINK) on keys in batches of
   LOOPGUARD_REDIS_SCAN_COUNT, calling callback with each batch's reply.
   Returns 0 or -1. */
int loopguard_redis_batches(struct loopguard_redis_conn *conn,
			    const char *command,
			    const ARRAY_TYPE(const_string) *keys,
			    loopguard_redis_batch_callback_t *callback,
			    void *context, const char **error_r);

#endif
