/* The Redis store driver: one Redis shared by many backends, each user's
   keys under one hash tag, every key with a TTL. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "str-sanitize.h"

#include "loopguard-text.h"
#include "loopguard-store-private.h"
#include "store-redis.h"
#include "store-redis-conn.h"
#include "store-redis-keys.h"
#include "store-redis-log.h"
#include "store-redis-scan.h"
#include "store-redis-script.h"
#include "store-redis-settings.h"
#include "store-redis-window.h"

struct redis_fingerprint_mark {
	unsigned char fingerprint[LOOPGUARD_STORE_FINGERPRINT_SIZE];
	unsigned int period;
	time_t last_seen;
};

ARRAY_DEFINE_TYPE(redis_fingerprint_mark, struct redis_fingerprint_mark);

struct redis_store {
	struct loopguard_store store;
	pool_t pool;
	struct loopguard_redis_settings set;
	/* "<prefix>:{<user>}:" */
	const char *user_prefix;
	unsigned int log_size;
	struct loopguard_redis_conn *conn;

	/* the open delivery's writes, sent at its commit */
	pool_t delivery_pool;
	ARRAY_TYPE(redis_fingerprint_mark) marks;
	ARRAY_TYPE(const_string) log_entries;
	/* the connection failed in this delivery: the delivery's further
	   calls fail at once, so that a dead Redis costs one timeout */
	char *failure;
};

/* Marks fingerprints and appends to the log in one step. KEYS: the
   fingerprints, then the log when there are entries. ARGV: the number of
   fingerprints, the period and time of each, then the log's size, its TTL
   and the entries. A fingerprint's expiry only grows, as in LMDB. */
static const struct loopguard_redis_script redis_commit_script = {
	.text =
"local n = tonumber(ARGV[1])\n"
"for i = 1, n do\n"
"  local period = tonumber(ARGV[2 * i])\n"
"  local ttl = redis.call('TTL', KEYS[i])\n"
"  if ttl < period then ttl = period end\n"
"  redis.call('SET', KEYS[i], ARGV[2 * i + 1], 'EX', ttl)\n"
"end\n"
"if #KEYS > n then\n"
"  local log, a = KEYS[n + 1], 2 * n + 2\n"
"  for j = a + 2, #ARGV do redis.call('RPUSH', log, ARGV[j]) end\n"
"  redis.call('LTRIM', log, -tonumber(ARGV[a]), -1)\n"
"  redis.call('EXPIRE', log, ARGV[a + 1])\n"
"end\n"
"return n\n"
};

static struct redis_store *redis_store(struct loopguard_store *store)
{
	i_assert(store->driver == &loopguard_store_driver_redis);
	return (struct redis_store *)store;
}

unsigned int loopguard_store_redis_round_trips(struct loopguard_store *store)
{
	return loopguard_redis_conn_round_trips(redis_store(store)->conn);
}

/*
 * Failures
 */

/* A connection failure: remembered for the rest of the delivery. */
static int store_redis_fail(struct redis_store *rstore, const char *error)
{
	if (rstore->delivery_pool != NULL && rstore->failure == NULL)
		rstore->failure = i_strdup(error);
	return -1;
}

static bool
store_redis_failed(struct redis_store *rstore, const char **error_r)
{
	if (rstore->failure == NULL)
		return FALSE;
	*error_r = t_strdup_printf("not tried again in this delivery: %s",
				   rstore->failure);
	return TRUE;
}

/*
 * Open, close
 */

static int
store_redis_settings(pool_t pool, const struct loopguard_store_settings *set,
		     struct loopguard_redis_settings *redis_set_r,
		     const char **error_r)
{
	if (loopguard_redis_settings_parse(pool, set->location, redis_set_r,
					   error_r) < 0)
		return -1;
	if (set->username == NULL || set->username[0] == '\0') {
		*error_r = "sieve_loopguard_db: redis: no user name to keep "
			"the user's keys apart";
		return -1;
	}
	return 0;
}

static const char *const *store_redis_scripts(void)
{
	static const char *scripts[2];

	scripts[0] = loopguard_redis_window_script_text();
	scripts[1] = NULL;
	return scripts;
}

static bool store_redis_claims(const char *location)
{
	return loopguard_redis_location_claims(location);
}

static int
store_redis_open(const struct loopguard_store_settings *set,
		 struct loopguard_store **store_r, const char **error_r)
{
	struct redis_store *rstore;
	pool_t pool;

	pool = pool_alloconly_create("loopguard redis store", 1024);
	rstore = p_new(pool, struct redis_store, 1);
	rstore->pool = pool;
	if (store_redis_settings(pool, set, &rstore->set, error_r) < 0) {
		pool_unref(&pool);
		return -1;
	}
	rstore->user_prefix = loopguard_redis_key_user(pool, rstore->set.prefix,
						       set->username);
	rstore->log_size = set->log_size;
	/* connects on first use */
	rstore->conn = loopguard_redis_conn_get(&rstore->set,
						store_redis_scripts(),
						set->event);
	*store_r = &rstore->store;
	return 0;
}

static void store_redis_delivery_end(struct redis_store *rstore)
{
	i_free(rstore->failure);
	pool_unref(&rstore->delivery_pool);
}

static void store_redis_close(struct loopguard_store *store)
{
	struct redis_store *rstore = redis_store(store);

	if (rstore->delivery_pool != NULL)
		store_redis_delivery_end(rstore);
	loopguard_redis_conn_release(&rstore->conn);
	pool_unref(&rstore->pool);
}

/* A Redis store is shared: nothing is created per user, and a user
   without keys is a user with an empty store. */
static int
store_redis_exists(const struct loopguard_store_settings *set,
		   const char **error_r)
{
	struct loopguard_redis_settings redis_set;
	int ret;

	T_BEGIN {
		pool_t pool = pool_datastack_create();

		ret = store_redis_settings(pool, set, &redis_set, error_r);
	} T_END_PASS_STR_IF(ret < 0, error_r);
	return ret < 0 ? -1 : 1;
}

static void store_redis_keep_idle(bool keep)
{
	loopguard_redis_conn_keep_idle(keep);
}

/*
 * The delivery
 */

static int
store_redis_delivery_begin(struct loopguard_store *store,
			   const char **error_r ATTR_UNUSED)
{
	struct redis_store *rstore = redis_store(store);

	i_assert(rstore->delivery_pool == NULL);
	rstore->delivery_pool =
		pool_alloconly_create("loopguard redis delivery", 1024);
	p_array_init(&rstore->marks, rstore->delivery_pool, 4);
	p_array_init(&rstore->log_entries, rstore->delivery_pool, 4);
	return 0;
}

/* Queues the commit script (by EVAL: its reply may be read by nobody,
   so a NOSCRIPT could not be retried) for marks and log entries, either
   may be NULL. */
static int
store_redis_append_writes(struct redis_store *rstore,
			  const ARRAY_TYPE(redis_fingerprint_mark) *marks,
			  const ARRAY_TYPE(const_string) *entries,
			  const char **error_r)
{
	const struct redis_fingerprint_mark *mark;
	ARRAY_TYPE(const_string) keys, args;
	const char *const *entry;
	const char *rkey;
	unsigned int nmarks = marks == NULL ? 0 : array_count(marks);

	t_array_init(&keys, 8);
	t_array_init(&args, 16);
	array_push_back(&args, &(const char *){ dec2str(nmarks) });
	if (nmarks > 0) {
		array_foreach(marks, mark) {
			rkey = loopguard_redis_key_fingerprint(
				rstore->user_prefix, mark->fingerprint,
				sizeof(mark->fingerprint));
			array_push_back(&keys, &rkey);
			array_push_back(&args,
					&(const char *){ dec2str(mark->period) });
			array_push_back(&args, &(const char *){
				dec2str(mark->last_seen) });
		}
	}
	if (entries != NULL && array_count(entries) > 0) {
		rkey = loopguard_redis_key_log(rstore->user_prefix);
		array_push_back(&keys, &rkey);
		array_push_back(&args,
				&(const char *){ dec2str(rstore->log_size) });
		array_push_back(&args, &(const char *){
			dec2str(LOOPGUARD_REDIS_LOG_TTL_SECS) });
		array_foreach(entries, entry)
			array_push_back(&args, entry);
	}
	array_append_array(&keys, &args);
	return loopguard_redis_script_append_eval(rstore->conn,
		&redis_commit_script, array_count(&keys) - array_count(&args),
		array_count(&keys), array_front(&keys), NULL, error_r);
}

/* The delivery's writes are sent without waiting for their replies (they
   are read with the next request, or when the connection is closed): a
   lost fingerprint mark or log line costs at most one duplicate let
   through, never a message, and the delivery does not wait a third round
   trip for it. */
static int
store_redis_delivery_commit(struct loopguard_store *store,
			    const char **error_r)
{
	struct redis_store *rstore = redis_store(store);
	int ret = 0;

	i_assert(rstore->delivery_pool != NULL);
	if (store_redis_failed(rstore, error_r))
		ret = -1;
	else if (array_count(&rstore->marks) > 0 ||
		 array_count(&rstore->log_entries) > 0) T_BEGIN {
		ret = store_redis_append_writes(rstore, &rstore->marks,
						&rstore->log_entries, error_r);
		if (ret == 0)
			ret = loopguard_redis_conn_send(rstore->conn, error_r);
	} T_END_PASS_STR_IF(ret < 0, error_r);
	store_redis_delivery_end(rstore);
	return ret;
}

static void store_redis_delivery_abort(struct loopguard_store *store)
{
	store_redis_delivery_end(redis_store(store));
}

/*
 * Requests
 */

/* Sends one command and waits for its reply. */
static int
store_redis_command(struct redis_store *rstore, unsigned int argc,
		    const char *const *argv, redisReply **reply_r,
		    const char **error_r)
{
	if (store_redis_failed(rstore, error_r))
		return -1;
	if (loopguard_redis_conn_command(rstore->conn, argc, argv, NULL,
					 reply_r, error_r) < 0) {
		if (loopguard_redis_conn_failed(rstore->conn))
			return store_redis_fail(rstore, *error_r);
		return -1;
	}
	return 0;
}

/*
 * Windows
 */

static int
store_redis_window_check(struct loopguard_store *store,
			 const char *handle, const char *key,
			 const struct loopguard_window_params *params,
			 const unsigned char message_hash[
				LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE],
			 time_t now, bool record,
			 struct loopguard_window_result *result_r,
			 const char **error_r)
{
	struct redis_store *rstore = redis_store(store);
	const char *rkey;

	if (store_redis_failed(rstore, error_r))
		return -1;
	rkey = loopguard_redis_key_window(rstore->user_prefix,
					  loopguard_text_stored_name(handle),
					  loopguard_text_stored_name(key));
	if (loopguard_redis_window_check(rstore->conn, rkey, params,
					 message_hash, now, record, result_r,
					 error_r) == 0)
		return 0;
	if (loopguard_redis_conn_failed(rstore->conn))
		return store_redis_fail(rstore, *error_r);
	*error_r = t_strdup_printf("Redis %s: %s",
				   loopguard_redis_settings_address(&rstore->set),
				   *error_r);
	return -1;
}

struct redis_window_iterate {
	struct redis_store *rstore;
	time_t now;
	loopguard_store_window_callback_t *callback;
	void *context;
};

static int
store_redis_window_visit(const char *const *keys, const redisReply *reply,
			 void *context, const char **error_r)
{
	struct redis_window_iterate *ctx = context;
	struct redis_store *rstore = ctx->rstore;
	struct loopguard_store_window window;
	const redisReply *value;
	unsigned int i;

	if (reply->type != REDIS_REPLY_ARRAY) {
		*error_r = "unexpected reply to MGET";
		return -1;
	}
	for (i = 0; i < reply->elements; i++) {
		value = reply->element[i];
		/* gone since SCAN saw it: expired or deleted */
		if (value->type != REDIS_REPLY_STRING)
			continue;
		i_zero(&window);
		if (!loopguard_redis_key_window_parse(rstore->user_prefix,
				keys[i], strlen(keys[i]), &window.handle,
				&window.key) ||
		    !loopguard_window_decode((const void *)value->str,
					     value->len, ctx->now,
					     &window.state)) {
			e_warning(rstore->store.event, "Redis: ignoring key "
				  "%s: not a window", str_sanitize(keys[i], 256));
			continue;
		}
		/* what LMDB would have purged by now */
		if (window.state.count_in_window == 0 &&
		    window.state.locked_until <= ctx->now)
			continue;
		if (ctx->callback(&window, ctx->context) < 0) {
			*error_r = "iteration stopped";
			return -1;
		}
	}
	return 0;
}

static int
store_redis_window_iterate(struct loopguard_store *store, const char *handle,
			   time_t now,
			   loopguard_store_window_callback_t *callback,
			   void *context, const char **error_r)
{
	struct redis_store *rstore = redis_store(store);
	struct redis_window_iterate ctx = {
		.rstore = rstore,
		.now = now,
		.callback = callback,
		.context = context,
	};
	ARRAY_TYPE(const_string) keys;
	const char *pattern;
	int ret;

	T_BEGIN {
		t_array_init(&keys, 64);
		pattern = loopguard_redis_key_pattern(rstore->user_prefix, TRUE,
			handle == NULL ? NULL :
			loopguard_text_stored_name(handle));
		ret = loopguard_redis_scan(rstore->conn, pattern, &keys,
					   error_r);
		if (ret == 0) {
			ret = loopguard_redis_batches(rstore->conn, "MGET",
						      &keys,
						      store_redis_window_visit,
						      &ctx, error_r);
		}
	} T_END_PASS_STR_IF(ret < 0, error_r);
	return ret;
}

static int
store_redis_window_delete(struct loopguard_store *store, const char *handle,
			  const char *key, const char **error_r)
{
	struct redis_store *rstore = redis_store(store);
	const char *argv[2];
	redisReply *reply;
	int ret;

	argv[0] = "DEL";
	argv[1] = loopguard_redis_key_window(rstore->user_prefix,
					     loopguard_text_stored_name(handle),
					     loopguard_text_stored_name(key));
	if (store_redis_command(rstore, N_ELEMENTS(argv), argv, &reply,
				error_r) < 0)
		return -1;
	ret = reply->type == REDIS_REPLY_INTEGER && reply->integer > 0 ? 1 : 0;
	freeReplyObject(reply);
	return ret;
}

/*
 * Fingerprints
 */

static struct redis_fingerprint_mark *
store_redis_mark_find(struct redis_store *rstore,
		      const unsigned char *fingerprint)
{
	struct redis_fingerprint_mark *mark;

	array_foreach_modifiable(&rstore->marks, mark) {
		if (memcmp(mark->fingerprint, fingerprint,
			   sizeof(mark->fingerprint)) == 0)
			return mark;
	}
	return NULL;
}

/* The stored value is the time last seen, in decimal. */
static bool
store_redis_seen(struct redis_store *rstore, const redisReply *reply,
		 unsigned int period, time_t now)
{
	uintmax_t last_seen;

	if (reply->type == REDIS_REPLY_NIL)
		return FALSE;
	if (reply->type != REDIS_REPLY_STRING ||
	    str_to_uintmax(t_strndup(reply->str, reply->len),
			   &last_seen) < 0) {
		e_warning(rstore->store.event, "Redis: ignoring a fingerprint "
			  "value %s", loopguard_redis_reply_text(reply));
		return FALSE;
	}
	/* unsigned: a stored time cannot overflow */
	return last_seen + period > (uintmax_t)now;
}

static int
store_redis_fingerprint_lookup(struct redis_store *rstore,
			       const struct redis_fingerprint_mark *mark,
			       bool in_delivery, bool *seen_r,
			       const char **error_r)
{
	ARRAY_TYPE(redis_fingerprint_mark) marks;
	redisReply *replies[2] = { NULL, NULL };
	const char *argv[2];
	unsigned int count = 1;

	argv[0] = "GET";
	argv[1] = loopguard_redis_key_fingerprint(rstore->user_prefix,
		mark->fingerprint, sizeof(mark->fingerprint));
	if (loopguard_redis_conn_append(rstore->conn, N_ELEMENTS(argv), argv,
					NULL, error_r) < 0)
		return store_redis_fail(rstore, *error_r);
	if (!in_delivery) {
		/* no delivery to wait for: marked in the same round trip */
		t_array_init(&marks, 1);
		array_push_back(&marks, mark);
		if (store_redis_append_writes(rstore, &marks, NULL,
					      error_r) < 0)
			return -1;
		count++;
	}
	if (loopguard_redis_conn_exchange(rstore->conn, count, replies,
					  error_r) < 0)
		return store_redis_fail(rstore, *error_r);
	if (replies[0]->type == REDIS_REPLY_ERROR ||
	    (count > 1 && replies[1]->type == REDIS_REPLY_ERROR)) {
		*error_r = t_strdup_printf("Redis %s: fingerprint: %s",
			loopguard_redis_settings_address(&rstore->set),
			loopguard_redis_reply_text(
				replies[0]->type == REDIS_REPLY_ERROR ?
				replies[0] : replies[1]));
		loopguard_redis_replies_free(replies, count);
		return -1;
	}
	*seen_r = store_redis_seen(rstore, replies[0], mark->period,
				   mark->last_seen);
	loopguard_redis_replies_free(replies, count);
	return 0;
}

/* In a delivery, the mark waits for its commit: a delivery that fails
   never makes its retry a duplicate. A second check of the same
   fingerprint in the delivery sees the first, as in LMDB's transaction. */
static int
store_redis_fingerprint_check(struct loopguard_store *store,
			      const unsigned char fingerprint[
				LOOPGUARD_STORE_FINGERPRINT_SIZE],
			      unsigned int period, time_t now,
			      bool *seen_r, const char **error_r)
{
	struct redis_store *rstore = redis_store(store);
	struct redis_fingerprint_mark new_mark, *mark;
	bool in_delivery = rstore->delivery_pool != NULL;
	int ret;

	if (store_redis_failed(rstore, error_r))
		return -1;
	if (in_delivery &&
	    (mark = store_redis_mark_find(rstore, fingerprint)) != NULL) {
		*seen_r = (uint64_t)mark->last_seen + period > (uint64_t)now;
		mark->period = I_MAX(mark->period, period);
		mark->last_seen = now;
		return 0;
	}

	i_zero(&new_mark);
	memcpy(new_mark.fingerprint, fingerprint, sizeof(new_mark.fingerprint));
	new_mark.period = period;
	new_mark.last_seen = now;
	T_BEGIN {
		ret = store_redis_fingerprint_lookup(rstore, &new_mark,
						     in_delivery, seen_r,
						     error_r);
	} T_END_PASS_STR_IF(ret < 0, error_r);
	if (ret == 0 && in_delivery)
		array_push_back(&rstore->marks, &new_mark);
	return ret;
}

/*
 * The log
 */

static int
store_redis_log_append(struct loopguard_store *store,
		       const struct loopguard_store_event *event,
		       const char **error_r)
{
	struct redis_store *rstore = redis_store(store);
	ARRAY_TYPE(const_string) entries;
	const char *entry;
	redisReply *reply;
	int ret;

	if (rstore->log_size == 0)
		return 0;
	if (rstore->delivery_pool != NULL) {
		entry = p_strdup(rstore->delivery_pool, loopguard_redis_log_entry(event));
		array_push_back(&rstore->log_entries, &entry);
		return 0;
	}
	if (store_redis_failed(rstore, error_r))
		return -1;
	T_BEGIN {
		t_array_init(&entries, 1);
		entry = loopguard_redis_log_entry(event);
		array_push_back(&entries, &entry);
		ret = store_redis_append_writes(rstore, NULL, &entries,
						error_r);
		if (ret == 0 && loopguard_redis_conn_exchange(
			rstore->conn, 1, &reply, error_r) == 0) {
			if (reply->type == REDIS_REPLY_ERROR) {
				*error_r = t_strdup_printf(
					"Redis: appending to the log "
					"failed: %s",
					loopguard_redis_reply_text(reply));
				ret = -1;
			}
			freeReplyObject(reply);
		} else {
			ret = -1;
		}
	} T_END_PASS_STR_IF(ret < 0, error_r);
	return ret;
}

static int
store_redis_log_iterate(struct loopguard_store *store, time_t since,
			loopguard_store_log_callback_t *callback,
			void *context, const char **error_r)
{
	struct redis_store *rstore = redis_store(store);
	struct loopguard_store_event event;
	const char *argv[4];
	const redisReply *line;
	redisReply *reply;
	unsigned int i;
	int ret = 0;

	argv[0] = "LRANGE";
	argv[1] = loopguard_redis_key_log(rstore->user_prefix);
	argv[2] = "0";
	argv[3] = "-1";
	if (store_redis_command(rstore, N_ELEMENTS(argv), argv, &reply,
				error_r) < 0)
		return -1;
	for (i = 0; i < reply->elements && ret == 0; i++) T_BEGIN {
		line = reply->element[i];
		if (line->type != REDIS_REPLY_STRING ||
		    !loopguard_redis_log_entry_parse(t_strndup(line->str, line->len),
					   &event)) {
			e_warning(store->event, "Redis: ignoring a log entry "
				  "of another format");
		} else if (event.time >= since &&
			   callback(&event, context) < 0) {
			*error_r = "iteration stopped";
			ret = -1;
		}
	} T_END;
	freeReplyObject(reply);
	return ret;
}

/*
 * Maintenance
 */

static int
store_redis_unlinked(const char *const *keys ATTR_UNUSED,
		     const redisReply *reply, void *context,
		     const char **error_r ATTR_UNUSED)
{
	unsigned int *purged = context;

	if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
		*purged += (unsigned int)reply->integer;
	return 0;
}

/* Every key has a TTL, so Redis drops what expired by itself: only "all"
   has work to do. */
static int
store_redis_purge(struct loopguard_store *store, time_t now ATTR_UNUSED,
		  bool all, unsigned int *purged_r, const char **error_r)
{
	struct redis_store *rstore = redis_store(store);
	ARRAY_TYPE(const_string) keys;
	int ret;

	*purged_r = 0;
	if (!all)
		return 0;
	T_BEGIN {
		t_array_init(&keys, 64);
		ret = loopguard_redis_scan(rstore->conn,
			loopguard_redis_key_pattern(rstore->user_prefix, FALSE,
						    NULL), &keys, error_r);
		if (ret == 0) {
			/* UNLINK frees the memory in the background */
			ret = loopguard_redis_batches(rstore->conn, "UNLINK",
						      &keys,
						      store_redis_unlinked,
						      purged_r, error_r);
		}
	} T_END_PASS_STR_IF(ret < 0, error_r);
	return ret;
}

const struct loopguard_store_driver loopguard_store_driver_redis = {
	.name = "redis",
	.claims = store_redis_claims,
	.v = {
		.open = store_redis_open,
		.close = store_redis_close,
		.exists = store_redis_exists,
		.keep_idle = store_redis_keep_idle,
		.delivery_begin = store_redis_delivery_begin,
		.delivery_commit = store_redis_delivery_commit,
		.delivery_abort = store_redis_delivery_abort,
		.window_check = store_redis_window_check,
		.window_iterate = store_redis_window_iterate,
		.window_delete = store_redis_window_delete,
		.fingerprint_check = store_redis_fingerprint_check,
		.log_append = store_redis_log_append,
		.log_iterate = store_redis_log_iterate,
		.purge = store_redis_purge,
	},
};
