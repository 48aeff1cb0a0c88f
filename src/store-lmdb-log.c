/* The LMDB driver's capped log of fired tests, in its own named
   database, keyed by a sequence number. */

#include "lib.h"
#include "str.h"

#include "store-lmdb-private.h"

#include <time.h>

struct store_lmdb_log_context {
	const string_t *value;
	unsigned int log_size;
	bool cleared;
};

static int
store_lmdb_log_append_txn(struct store_lmdb *store, MDB_txn *txn,
			  void *context, const char **func_r)
{
	struct store_lmdb_log_context *ctx = context;
	struct store_lmdb_env *env = store->env;
	unsigned char seq_buf[LOOPGUARD_CODEC_LOG_KEY_SIZE];
	MDB_cursor *cursor;
	MDB_stat stat;
	MDB_val k, v;
	uint64_t seq = 0;
	size_t entries;
	int rc;

	ctx->cleared = FALSE;
	/* the entries trimmed off have no bound */
	store_lmdb_delivery_uncounted(env);
	*func_r = "mdb_cursor_open";
	if ((rc = mdb_cursor_open(txn, env->log_dbi, &cursor)) != 0)
		return rc;
	*func_r = "mdb_cursor_get";
	rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
	if (rc == 0 && k.mv_size != LOOPGUARD_CODEC_LOG_KEY_SIZE) {
		/* Not a key we wrote: sequence numbers cannot continue after
		   it, and the log is only a convenience, so start it over. */
		ctx->cleared = TRUE;
		*func_r = "mdb_drop";
		rc = mdb_drop(txn, env->log_dbi, 0);
		if (rc == 0)
			rc = MDB_NOTFOUND;
	} else if (rc == 0) {
		seq = loopguard_codec_log_key_read(k.mv_data);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;

	if (rc == 0 && ctx->log_size > 0) {
		loopguard_codec_log_key_write(seq + 1, seq_buf);
		k.mv_data = seq_buf;
		k.mv_size = sizeof(seq_buf);
		v.mv_data = (void *)str_data(ctx->value);
		v.mv_size = str_len(ctx->value);
		*func_r = "mdb_put";
		rc = mdb_cursor_put(cursor, &k, &v, MDB_APPEND);
	}
	if (rc == 0) {
		*func_r = "mdb_stat";
		rc = mdb_stat(txn, env->log_dbi, &stat);
	}
	if (rc == 0) {
		*func_r = "mdb_cursor_del";
		for (entries = stat.ms_entries; entries > ctx->log_size;
		     entries--) {
			rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
			if (rc == 0)
				rc = mdb_cursor_del(cursor, 0);
			if (rc != 0)
				break;
		}
	}
	mdb_cursor_close(cursor);
	return rc;
}


int store_lmdb_log_append(struct loopguard_store *_store,
			  const struct loopguard_store_event *event,
			  const char **error_r)
{
	struct store_lmdb *store = store_lmdb_cast(_store);
	struct store_lmdb_log_context ctx;
	string_t *value;
	int ret;

	if (store_lmdb_check(store, error_r) < 0)
		return -1;

	T_BEGIN {
		value = t_str_new(256);
		loopguard_codec_log_entry_build(event, value);
		i_zero(&ctx);
		ctx.value = value;
		ctx.log_size = store->log_size;
		ret = store_lmdb_write(store, time(NULL), FALSE,
				       store_lmdb_log_append_txn, &ctx,
				       error_r);
	} T_END_PASS_STR_IF(ret < 0, error_r);
	if (ret == 0 && ctx.cleared) {
		e_warning(store->store.event, "%s: log had a foreign key, "
			  "cleared the log", store->env->path);
	}
	return ret;
}

/* Entries are visited in the order they were appended, which is time
   order unless the clock jumped back. */
struct store_lmdb_log_iterate_context {
	time_t since;
	loopguard_store_log_callback_t *callback;
	void *context;
	unsigned int unreadable;
};

static bool
store_lmdb_log_iterate_visit(const MDB_val *key ATTR_UNUSED,
			     const MDB_val *value, void *context)
{
	struct store_lmdb_log_iterate_context *lctx = context;
	struct loopguard_store_event event;

	if (!loopguard_codec_log_entry_parse(value->mv_data, value->mv_size,
					     &event)) {
		lctx->unreadable++;
		return TRUE;
	}
	if (event.time < lctx->since)
		return TRUE;
	return lctx->callback(&event, lctx->context) >= 0;
}

int store_lmdb_log_iterate(struct loopguard_store *_store, time_t since,
			   loopguard_store_log_callback_t *callback,
			   void *context, const char **error_r)
{
	struct store_lmdb *store = store_lmdb_cast(_store);
	struct store_lmdb_log_iterate_context lctx = {
		.since = since,
		.callback = callback,
		.context = context,
	};
	int ret;

	ret = store_lmdb_scan(store, store->env->log_dbi,
			      store_lmdb_log_iterate_visit, &lctx, error_r);
	if (lctx.unreadable > 0) {
		e_warning(store->store.event, "%s: ignoring %u unreadable "
			  "log entries", store->env->path, lctx.unreadable);
	}
	return ret;
}
