/* Running Lua scripts on Redis by EVALSHA, falling back to EVAL. */

#include "lib.h"
#include "hex-binary.h"
#include "sha1.h"

#include "store-redis-script.h"

static const char *
redis_script_sha(struct loopguard_redis_script *script)
{
	unsigned char digest[SHA1_RESULTLEN];

	if (script->sha[0] == '\0') {
		sha1_get_digest(script->text, strlen(script->text), digest);
		i_assert(sizeof(script->sha) == SHA1_RESULTLEN * 2 + 1);
		memcpy(script->sha, binary_to_hex(digest, SHA1_RESULTLEN),
		       SHA1_RESULTLEN * 2);
		script->sha[SHA1_RESULTLEN * 2] = '\0';
	}
	return script->sha;
}

static int
redis_script_append(struct loopguard_redis_conn *conn, const char *command,
		    const char *body, unsigned int nkeys, unsigned int argc,
		    const char *const *argv, const size_t *argvlen,
		    const char **error_r)
{
	const char **args = t_new(const char *, argc + 3);
	size_t *lens = t_new(size_t, argc + 3);
	unsigned int i;

	args[0] = command;
	args[1] = body;
	args[2] = dec2str(nkeys);
	for (i = 0; i < 3; i++)
		lens[i] = strlen(args[i]);
	for (i = 0; i < argc; i++) {
		args[i + 3] = argv[i];
		lens[i + 3] = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
	}
	return loopguard_redis_conn_append(conn, argc + 3, args, lens,
					   error_r);
}

int loopguard_redis_script_run(struct loopguard_redis_conn *conn,
			       struct loopguard_redis_script *script,
			       unsigned int nkeys, unsigned int argc,
			       const char *const *argv, const size_t *argvlen,
			       redisReply **reply_r, const char **error_r)
{
	redisReply *reply;

	*reply_r = NULL;
	if (redis_script_append(conn, "EVALSHA", redis_script_sha(script),
				nkeys, argc, argv, argvlen, error_r) < 0 ||
	    loopguard_redis_conn_exchange(conn, 1, &reply, error_r) < 0)
		return -1;
	if (reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		/* EVAL also caches it for the next EVALSHA */
		freeReplyObject(reply);
		if (redis_script_append(conn, "EVAL", script->text, nkeys,
					argc, argv, argvlen, error_r) < 0 ||
		    loopguard_redis_conn_exchange(conn, 1, &reply,
						  error_r) < 0)
			return -1;
	}
	*reply_r = reply;
	return 0;
}

int loopguard_redis_script_append_eval(struct loopguard_redis_conn *conn,
				       const struct loopguard_redis_script *script,
				       unsigned int nkeys, unsigned int argc,
				       const char *const *argv,
				       const size_t *argvlen,
				       const char **error_r)
{
	return redis_script_append(conn, "EVAL", script->text, nkeys, argc,
				   argv, argvlen, error_r);
}
