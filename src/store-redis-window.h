#ifndef LOOPGUARD_REDIS_WINDOW_H
#define LOOPGUARD_REDIS_WINDOW_H

/* ratelimit's window on Redis: loopguard_window_apply() run server-side
   as one Lua script, so that the check and the count are one atomic step
   for all backends. The stored value is loopguard-window.c's payload, byte
   for byte, with the record's expiry as the key's TTL. */

#include "loopguard-window.h"
#include "store-redis-conn.h"

/* As loopguard_window_apply() on the value of rkey, writing it back when
   record is TRUE. One round trip; none when the rules say nothing is
   counted (count or period 0, now before 1970). Returns 0, or -1 with
   *error_r set. */
int loopguard_redis_window_check(struct loopguard_redis_conn *conn,
				 const char *rkey,
				 const struct loopguard_window_params *params,
				 const unsigned char message_hash[
					LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE],
				 time_t now, bool record,
				 struct loopguard_window_result *result_r,
				 const char **error_r);

/* The script's text, to load it on connecting. */
const char *loopguard_redis_window_script_text(void);

#endif
