/* The LMDB driver's record layer: keyed records that expire, read and
   changed in the transactions store-lmdb-map.c runs. */

#include "lib.h"
#include "buffer.h"
#include "str-sanitize.h"

#include "store-lmdb-private.h"

#include <time.h>

void store_lmdb_key_build(const struct store_lmdb_env *env,
			  enum loopguard_codec_kind kind,
			  const char *handle, const char *key,
			  buffer_t *dest)
{
	loopguard_codec_key_build(kind, handle, strlen(handle),
				  key, strlen(key), env->max_key_size, dest);
}

static bool
store_lmdb_record_parse(const struct store_lmdb_env *env,
			const MDB_val *k, const MDB_val *v,
			struct loopguard_codec_record *record_r,
			const char **error_r)
{
	return loopguard_codec_record_parse(k->mv_data, k->mv_size,
					    v->mv_data, v->mv_size,
					    env->max_key_size, record_r,
					    error_r);
}

/*
 * Unreadable records
 */

static void
store_lmdb_unreadable_add(struct store_lmdb_unreadable *unreadable,
			  const char *error)
{
	if (unreadable->count++ == 0) {
		(void)i_strocpy(unreadable->first_error, error,
				sizeof(unreadable->first_error));
	}
}

void store_lmdb_unreadable_merge(struct store_lmdb_unreadable *dest,
				 const struct store_lmdb_unreadable *src)
{
	if (src->count == 0)
		return;
	if (dest->count == 0)
		*dest = *src;
	else
		dest->count += src->count;
}

void store_lmdb_unreadable_log(struct store_lmdb *store,
			       const struct store_lmdb_unreadable *unreadable,
			       const char *what)
{
	if (unreadable->count == 1) {
		e_warning(store->store.event, "%s: %s unreadable record: %s",
			  store->env->path, what, unreadable->first_error);
	} else if (unreadable->count > 1) {
		e_warning(store->store.event, "%s: %s %u unreadable records "
			  "(the first: %s)", store->env->path, what,
			  unreadable->count, unreadable->first_error);
	}
}

/* For the one record a lookup or update asked for. */
static void
store_lmdb_unreadable_log_handle(struct store_lmdb *store, const char *handle,
				 const struct store_lmdb_unreadable *unreadable)
{
	if (unreadable->count > 0) {
		e_warning(store->store.event, "%s: ignoring unreadable record "
			  "(handle %s): %s", store->env->path,
			  str_sanitize(handle, 128), unreadable->first_error);
	}
}

/* The live record stored under k for kind/handle/key, if any. Unreadable
   values are treated as absent, and added to unreadable. */
static bool
store_lmdb_record_get(const struct store_lmdb_env *env,
		      const MDB_val *k, const MDB_val *v,
		      const char *handle, const char *key, time_t now,
		      struct loopguard_codec_record *record_r,
		      struct store_lmdb_unreadable *unreadable)
{
	const char *error;

	if (!store_lmdb_record_parse(env, k, v, record_r, &error)) {
		store_lmdb_unreadable_add(unreadable, error);
		return FALSE;
	}
	if (strcmp(record_r->handle, handle) != 0 ||
	    strcmp(record_r->key, key) != 0) {
		/* only a SHA-256 collision gets here */
		return FALSE;
	}
	record_r->expires = loopguard_codec_record_expires(record_r, now);
	return record_r->expires > now;
}

/* Whether the sweep and purge drop the record: expired, or not readable
   (a value we cannot parse is of no use and is never trusted). A value
   that does not belong to its key is not looked for here: lookups never
   trust it, and it goes once it has expired. Checking it would hash every
   long key examined, which made a scan of a full store of long keys cost
   more than the rest of a delivery. */
bool store_lmdb_record_is_dead(const struct store_lmdb_env *env ATTR_UNUSED,
			       const MDB_val *k, const MDB_val *v, time_t now,
			       struct store_lmdb_unreadable *unreadable)
{
	struct loopguard_codec_record record;
	const char *error;
	bool dead;

	T_BEGIN {
		if (!loopguard_codec_record_parse_raw(k->mv_data, k->mv_size,
						      v->mv_data, v->mv_size,
						      &record, &error)) {
			store_lmdb_unreadable_add(unreadable, error);
			dead = TRUE;
		} else {
			dead = loopguard_codec_record_expires(&record,
							      now) <= now;
		}
	} T_END;
	return dead;
}

/*
 * Update
 */

struct store_lmdb_update_context {
	enum loopguard_codec_kind kind;
	const char *handle, *key;
	time_t now;
	const buffer_t *db_key;
	store_lmdb_update_callback_t *callback;
	void *context;
	buffer_t *payload, *value;

	struct store_lmdb_reap sweep;
	/* the updated record itself */
	struct store_lmdb_unreadable unreadable;
};

static int
store_lmdb_update_txn(struct store_lmdb *store, MDB_txn *txn, void *context,
		      const char **func_r)
{
	struct store_lmdb_update_context *ctx = context;
	struct store_lmdb_env *env = store->env;
	struct loopguard_codec_record old;
	const struct loopguard_codec_record *oldp = NULL;
	MDB_val k, v;
	bool stored, keep;
	time_t expires = 0;
	int rc;

	/* this may be a retry after MDB_MAP_FULL */
	i_zero(&ctx->unreadable);
	k.mv_data = (void *)ctx->db_key->data;
	k.mv_size = ctx->db_key->used;
	rc = mdb_get(txn, env->records_dbi, &k, &v);
	if (rc == 0) {
		if (store_lmdb_record_get(env, &k, &v, ctx->handle,
					  ctx->key, ctx->now, &old,
					  &ctx->unreadable))
			oldp = &old;
	} else if (rc != MDB_NOTFOUND) {
		*func_r = "mdb_get";
		return rc;
	}
	stored = rc == 0;

	buffer_set_used_size(ctx->payload, 0);
	keep = ctx->callback(oldp, ctx->now, ctx->payload, &expires,
			     ctx->context);
	if (keep && expires > ctx->now) {
		if (ctx->kind == LOOPGUARD_CODEC_KIND_COMPACT) {
			loopguard_codec_value_build_compact(expires,
							    ctx->payload,
							    ctx->value);
		} else {
			loopguard_codec_value_build(ctx->handle, ctx->key,
						    expires, ctx->payload,
						    ctx->value);
		}
		v.mv_data = (void *)ctx->value->data;
		v.mv_size = ctx->value->used;
		*func_r = "mdb_put";
		if ((rc = store_lmdb_put(env, txn, env->records_dbi,
					 &k, &v)) != 0)
			return rc;
	} else if (stored && (keep || oldp == NULL)) {
		/* Either a deletion, or the callback left alone a record
		   nobody can see anyway (expired or unreadable): drop that
		   now rather than waiting for the sweep. */
		*func_r = "mdb_del";
		rc = store_lmdb_del(env, txn, env->records_dbi, &k);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return rc;
	}
	return store_lmdb_sweep(store, txn, &ctx->sweep, func_r);
}

int store_lmdb_update(struct loopguard_store *_store,
		      enum loopguard_codec_kind kind,
		      const char *handle, const char *key, time_t now,
		      store_lmdb_update_callback_t *callback,
		      void *context, const char **error_r)
{
	struct store_lmdb *store = store_lmdb_cast(_store);
	struct store_lmdb_update_context ctx;
	buffer_t *db_key;
	int ret;

	if (store_lmdb_check(store, error_r) < 0)
		return -1;

	/* No T_BEGIN here: the callback may allocate from the caller's data
	   stack frame. The temporary allocations are small. */
	i_zero(&ctx);
	ctx.kind = kind;
	ctx.handle = handle;
	ctx.key = key;
	ctx.now = now;
	ctx.callback = callback;
	ctx.context = context;
	ctx.payload = t_buffer_create(128);
	ctx.value = t_buffer_create(256);
	db_key = t_buffer_create(128);
	store_lmdb_key_build(store->env, kind, handle, key, db_key);
	ctx.db_key = db_key;
	ctx.sweep.max_scan = STORE_LMDB_SWEEP_COUNT;
	ctx.sweep.max_deletes = UINT_MAX;
	ctx.sweep.now = now;
	ctx.sweep.next_key = t_buffer_create(64);
	ctx.sweep.dead = t_buffer_create(256);
	ret = store_lmdb_write(store, now, FALSE, store_lmdb_update_txn,
			       &ctx, error_r);
	store_lmdb_unreadable_log_handle(store, handle, &ctx.unreadable);
	if (ret == 0)
		store_lmdb_unreadable_log(store, &ctx.sweep.unreadable,
					  "dropped");
	return ret;
}

/*
 * Lookup and delete
 */

static void
store_lmdb_record_copy(pool_t pool, const struct loopguard_codec_record *src,
		       struct loopguard_codec_record *dest)
{
	dest->kind = src->kind;
	dest->handle = p_strdup(pool, src->handle);
	dest->key = p_strdup(pool, src->key);
	dest->expires = src->expires;
	dest->payload_size = src->payload_size;
	/* the payload lives in the map only until the transaction ends */
	dest->payload = p_memdup(pool, src->payload,
				 I_MAX(src->payload_size, 1));
}

/* The transaction a read runs in: inside a delivery its transaction, which
   sees the delivery's own changes, else a read-only one of its own. */
static int
store_lmdb_read_begin(struct store_lmdb_env *env, MDB_txn **txn_r,
		      const char **error_r)
{
	int rc;

	if (env->delivery == NULL) {
		rc = store_lmdb_txn_begin(env, FALSE, txn_r);
		if (rc != 0) {
			*error_r = store_lmdb_failed(env, "mdb_txn_begin", rc);
			return -1;
		}
	} else if ((*txn_r = env->delivery->txn) == NULL) {
		*error_r = t_strdup_printf("loopguard store %s: the delivery's "
			"transaction ended after an error", env->path);
		return -1;
	}
	return 0;
}

static void store_lmdb_read_end(struct store_lmdb_env *env, MDB_txn *txn)
{
	if (env->delivery == NULL)
		mdb_txn_abort(txn);
}

int store_lmdb_lookup(struct loopguard_store *_store,
		      enum loopguard_codec_kind kind,
		      const char *handle, const char *key, time_t now,
		      pool_t pool, struct loopguard_codec_record *record_r,
		      const char **error_r)
{
	struct store_lmdb *store = store_lmdb_cast(_store);
	struct store_lmdb_env *env = store->env;
	struct loopguard_codec_record record;
	struct store_lmdb_unreadable unreadable;
	MDB_txn *txn;
	MDB_val k, v;
	buffer_t *db_key;
	int rc, ret = 0;

	i_zero(record_r);
	i_zero(&unreadable);
	if (store_lmdb_check(store, error_r) < 0 ||
	    store_lmdb_read_begin(env, &txn, error_r) < 0)
		return -1;

	/* No T_BEGIN here: pool may be a data stack pool of the caller's
	   frame. The temporary allocations are small. */
	db_key = t_buffer_create(128);
	store_lmdb_key_build(env, kind, handle, key, db_key);
	k.mv_data = (void *)db_key->data;
	k.mv_size = db_key->used;
	rc = mdb_get(txn, env->records_dbi, &k, &v);
	if (rc == 0 &&
	    store_lmdb_record_get(env, &k, &v, handle, key, now,
				  &record, &unreadable)) {
		store_lmdb_record_copy(pool, &record, record_r);
		ret = 1;
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
	store_lmdb_read_end(env, txn);
	store_lmdb_unreadable_log_handle(store, handle, &unreadable);
	if (rc != 0) {
		*error_r = store_lmdb_failed(env, "mdb_get", rc);
		return -1;
	}
	return ret;
}

/* Whether any record of kind is stored: the first key at or after the
   kind's byte begins with it. */
int store_lmdb_kind_present(struct store_lmdb *store,
			    enum loopguard_codec_kind kind, bool *present_r,
			    const char **error_r)
{
	struct store_lmdb_env *env = store->env;
	const char *func = "mdb_cursor_open";
	unsigned char kind_byte = kind;
	MDB_cursor *cursor;
	MDB_txn *txn;
	MDB_val k, v;
	int rc;

	*present_r = FALSE;
	if (store_lmdb_check(store, error_r) < 0 ||
	    store_lmdb_read_begin(env, &txn, error_r) < 0)
		return -1;
	rc = mdb_cursor_open(txn, env->records_dbi, &cursor);
	if (rc == 0) {
		func = "mdb_cursor_get";
		k.mv_data = &kind_byte;
		k.mv_size = 1;
		rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
		if (rc == 0) {
			*present_r = k.mv_size > 0 &&
				((const unsigned char *)k.mv_data)[0] ==
				kind_byte;
		} else if (rc == MDB_NOTFOUND) {
			rc = 0;
		}
		mdb_cursor_close(cursor);
	}
	store_lmdb_read_end(env, txn);
	if (rc != 0) {
		*error_r = store_lmdb_failed(env, func, rc);
		return -1;
	}
	return 0;
}

struct store_lmdb_delete_context {
	const char *handle, *key;
	const buffer_t *db_key;
	int ret;
};

static int
store_lmdb_delete_txn(struct store_lmdb *store, MDB_txn *txn, void *context,
		      const char **func_r)
{
	struct store_lmdb_delete_context *ctx = context;
	struct loopguard_codec_record record;
	const char *error;
	MDB_val k, v;
	int rc;

	ctx->ret = 0;
	k.mv_data = (void *)ctx->db_key->data;
	k.mv_size = ctx->db_key->used;
	*func_r = "mdb_get";
	rc = mdb_get(txn, store->env->records_dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (store_lmdb_record_parse(store->env, &k, &v, &record, &error)) {
		if (strcmp(record.handle, ctx->handle) != 0 ||
		    strcmp(record.key, ctx->key) != 0) {
			/* another key's record under a colliding hash */
			return 0;
		}
		ctx->ret = 1;
	}
	*func_r = "mdb_del";
	return store_lmdb_del(store->env, txn, store->env->records_dbi, &k);
}

int store_lmdb_delete(struct loopguard_store *_store,
		      enum loopguard_codec_kind kind,
		      const char *handle, const char *key,
		      const char **error_r)
{
	struct store_lmdb *store = store_lmdb_cast(_store);
	struct store_lmdb_delete_context ctx;
	buffer_t *db_key;
	int ret;

	if (store_lmdb_check(store, error_r) < 0)
		return -1;

	T_BEGIN {
		i_zero(&ctx);
		ctx.handle = handle;
		ctx.key = key;
		db_key = t_buffer_create(128);
		store_lmdb_key_build(store->env, kind, handle, key, db_key);
		ctx.db_key = db_key;
		ret = store_lmdb_write(store, time(NULL), TRUE,
				       store_lmdb_delete_txn, &ctx, error_r);
	} T_END_PASS_STR_IF(ret < 0, error_r);
	return ret < 0 ? -1 : ctx.ret;
}

/*
 * Iteration
 */

int store_lmdb_scan(struct store_lmdb *store, MDB_dbi dbi,
		    store_lmdb_scan_visit_t *visit, void *context,
		    const char **error_r)
{
	struct store_lmdb_env *env = store->env;
	const char *func = "mdb_txn_begin";
	MDB_cursor *cursor;
	MDB_txn *txn;
	MDB_val k, v;
	bool stopped = FALSE;
	int rc;

	if (store_lmdb_check(store, error_r) < 0)
		return -1;
	if ((rc = store_lmdb_txn_begin(env, FALSE, &txn)) != 0) {
		*error_r = store_lmdb_failed(env, func, rc);
		return -1;
	}
	func = "mdb_cursor_open";
	if ((rc = mdb_cursor_open(txn, dbi, &cursor)) != 0) {
		mdb_txn_abort(txn);
		*error_r = store_lmdb_failed(env, func, rc);
		return -1;
	}
	func = "mdb_cursor_get";
	rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
	while (rc == 0 && !stopped) {
		T_BEGIN {
			stopped = !visit(&k, &v, context);
		} T_END;
		if (!stopped)
			rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cursor);
	mdb_txn_abort(txn);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		*error_r = store_lmdb_failed(env, func, rc);
		return -1;
	}
	if (stopped) {
		*error_r = t_strdup_printf("loopguard store %s: "
					   "iteration stopped", env->path);
		return -1;
	}
	return 0;
}

struct store_lmdb_iterate_context {
	const struct store_lmdb_env *env;
	time_t now;
	store_lmdb_iterate_callback_t *callback;
	void *context;
	struct store_lmdb_unreadable unreadable;
};

static bool
store_lmdb_iterate_visit(const MDB_val *key, const MDB_val *value,
			 void *context)
{
	struct store_lmdb_iterate_context *ictx = context;
	struct loopguard_codec_record record;
	const char *error;

	if (!store_lmdb_record_parse(ictx->env, key, value, &record, &error)) {
		store_lmdb_unreadable_add(&ictx->unreadable, error);
		return TRUE;
	}
	record.expires = loopguard_codec_record_expires(&record, ictx->now);
	if (record.expires <= ictx->now)
		return TRUE;
	return ictx->callback(&record, ictx->context) >= 0;
}

int store_lmdb_iterate(struct loopguard_store *_store, time_t now,
		       store_lmdb_iterate_callback_t *callback,
		       void *context, const char **error_r)
{
	struct store_lmdb *store = store_lmdb_cast(_store);
	struct store_lmdb_iterate_context ictx = {
		.env = store->env,
		.now = now,
		.callback = callback,
		.context = context,
	};
	int ret;

	ret = store_lmdb_scan(store, store->env->records_dbi,
			      store_lmdb_iterate_visit, &ictx, error_r);
	store_lmdb_unreadable_log(store, &ictx.unreadable, "ignoring");
	return ret;
}
