#ifndef LOOPGUARD_REDIS_CONN_H
#define LOOPGUARD_REDIS_CONN_H

/* One blocking connection to Redis with bounded waits, shared by the
   opens of a store in one process (see loopguard_store_keep_idle()).

   Commands are queued, then sent together: _exchange() waits for their
   replies (one round trip), _send() does not (their replies are read
   before those of the next exchange, or at release). Connecting, AUTH and
   SELECT happen lazily, in the first round trip. A connection that failed
   (refused, timed out, closed) is dropped; the next command connects
   again. A connection made before fork() is never used by the child. */

#include <hiredis/hiredis.h>

#include "store-redis-settings.h"

struct loopguard_redis_conn;

/* Returns the idle connection for set, or a new one (not yet connected).
   scripts (NULL-terminated, static) are loaded on connecting. Its
   messages go to event until _release(). */
struct loopguard_redis_conn *
loopguard_redis_conn_get(const struct loopguard_redis_settings *set,
			 const char *const *scripts, struct event *event);
/* Keeps the connection idle when asked to (loopguard_redis_conn_keep_idle)
   and it is sound; otherwise reads what is outstanding (bounded by the
   timeout) and closes it. */
void loopguard_redis_conn_release(struct loopguard_redis_conn **conn);
void loopguard_redis_conn_keep_idle(bool keep);

/* Queues one command; argvlen may be NULL for NUL-terminated arguments.
   Returns 0, or -1 when no connection could be made. */
int loopguard_redis_conn_append(struct loopguard_redis_conn *conn,
				unsigned int argc, const char *const *argv,
				const size_t *argvlen, const char **error_r);
/* Sends the queued commands and waits for the replies of the last count
   of them, stored in replies_r[] (freed by _replies_free()). A Redis error
   reply is a reply, not a failure. Returns 0, or -1 when the connection
   failed or timed out: then it is closed and nothing was returned. */
int loopguard_redis_conn_exchange(struct loopguard_redis_conn *conn,
				  unsigned int count, redisReply **replies_r,
				  const char **error_r);
void loopguard_redis_replies_free(redisReply **replies, unsigned int count);
/* Sends the queued commands without waiting for their replies; an error
   reply among them is logged when it is read. Returns 0, or -1 when
   they could not be sent. */
int loopguard_redis_conn_send(struct loopguard_redis_conn *conn,
			      const char **error_r);

/* Sends one command and waits for its reply (freeReplyObject() it). An
   error reply fails too, with its text. Returns 0 or -1. */
int loopguard_redis_conn_command(struct loopguard_redis_conn *conn,
				 unsigned int argc, const char *const *argv,
				 const size_t *argvlen, redisReply **reply_r,
				 const char **error_r);

/* Whether the last attempt to connect, send or read failed (an error
   reply is no failure of the connection). */
bool loopguard_redis_conn_failed(const struct loopguard_redis_conn *conn);

/* Round trips waited for since the connection was made: for tests and
   benchmarks. */
unsigned int
loopguard_redis_conn_round_trips(const struct loopguard_redis_conn *conn);

/* reply's text (an error reply's message), for messages */
const char *loopguard_redis_reply_text(const redisReply *reply);

#endif
