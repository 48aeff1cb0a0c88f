#ifndef LOOPGUARD_REDIS_SCRIPT_H
#define LOOPGUARD_REDIS_SCRIPT_H

/* Lua scripts run on the Redis server: by EVALSHA, so that the script's
   text crosses the network once per server, not with every call. */

#include "store-redis-conn.h"

struct loopguard_redis_script {
	const char *text;
	/* SHA-1 of text in hex, computed on first use */
	char sha[41];
};

/* Runs script with its keys first in argv (nkeys of them), waiting for
   the reply: one round trip, two when the server does not know the script
   yet (NOSCRIPT after a restart or SCRIPT FLUSH: then EVAL sends it).
   A script error is returned as an error reply in *reply_r. Returns 0, or
   -1 when the connection failed. */
int loopguard_redis_script_run(struct loopguard_redis_conn *conn,
			       struct loopguard_redis_script *script,
			       unsigned int nkeys, unsigned int argc,
			       const char *const *argv, const size_t *argvlen,
			       redisReply **reply_r, const char **error_r);

/* Queues script by EVAL, with its text: for a call nobody waits for,
   whose NOSCRIPT could not be answered by a retry. */
int loopguard_redis_script_append_eval(struct loopguard_redis_conn *conn,
				       const struct loopguard_redis_script *script,
				       unsigned int nkeys, unsigned int argc,
				       const char *const *argv,
				       const size_t *argvlen,
				       const char **error_r);

#endif
