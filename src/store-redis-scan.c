/* SCAN over a pattern and batched commands on what it found. */

#include "lib.h"
#include "array.h"
#include "hash.h"

#include "store-redis-scan.h"

static bool redis_scan_reply_valid(const redisReply *reply)
{
	return reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
		reply->element[0]->type == REDIS_REPLY_STRING &&
		reply->element[1]->type == REDIS_REPLY_ARRAY;
}

int loopguard_redis_scan(struct loopguard_redis_conn *conn,
			 const char *pattern,
			 ARRAY_TYPE(const_string) *keys_r,
			 const char **error_r)
{
	HASH_TABLE(const char *, const char *) seen;
	const char *argv[6], *cursor = "0", *name;
	const redisReply *page;
	redisReply *reply;
	unsigned int i;
	int ret = 0;

	hash_table_create(&seen, pool_datastack_create(), 0, str_hash, strcmp);
	argv[0] = "SCAN";
	argv[2] = "MATCH";
	argv[3] = pattern;
	argv[4] = "COUNT";
	argv[5] = dec2str(LOOPGUARD_REDIS_SCAN_COUNT);
	do {
		argv[1] = cursor;
		if (loopguard_redis_conn_command(conn, N_ELEMENTS(argv), argv,
						 NULL, &reply, error_r) < 0) {
			ret = -1;
			break;
		}
		if (!redis_scan_reply_valid(reply)) {
			*error_r = t_strdup_printf("unexpected reply to SCAN: %s",
				loopguard_redis_reply_text(reply));
			freeReplyObject(reply);
			ret = -1;
			break;
		}
		cursor = t_strndup(reply->element[0]->str,
				   reply->element[0]->len);
		page = reply->element[1];
		for (i = 0; i < page->elements; i++) {
			if (page->element[i]->type != REDIS_REPLY_STRING)
				continue;
			name = t_strndup(page->element[i]->str,
					 page->element[i]->len);
			if (hash_table_lookup(seen, name) != NULL)
				continue;
			hash_table_insert(seen, name, name);
			array_push_back(keys_r, &name);
		}
		freeReplyObject(reply);
	} while (strcmp(cursor, "0") != 0);
	hash_table_destroy(&seen);
	return ret;
}

int loopguard_redis_batches(struct loopguard_redis_conn *conn,
			    const char *command,
			    const ARRAY_TYPE(const_string) *keys,
			    loopguard_redis_batch_callback_t *callback,
			    void *context, const char **error_r)
{
	const char *const *names;
	const char **argv;
	unsigned int i, n, batch;
	redisReply *reply;
	int ret = 0;

	names = array_get(keys, &n);
	argv = t_new(const char *, LOOPGUARD_REDIS_SCAN_COUNT + 1);
	argv[0] = command;
	for (i = 0; i < n && ret == 0; i += batch) {
		batch = I_MIN(n - i, LOOPGUARD_REDIS_SCAN_COUNT);
		memcpy(argv + 1, names + i, batch * sizeof(*argv));
		if (loopguard_redis_conn_command(conn, batch + 1, argv, NULL,
						 &reply, error_r) < 0)
			return -1;
		ret = callback(names + i, reply, context, error_r);
		freeReplyObject(reply);
	}
	return ret;
}
