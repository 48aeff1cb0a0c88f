/* The LMDB store driver: one LMDB environment per user, holding windows,
   fingerprints and the capped log. This file maps the store's operations
   onto the record layer (store-lmdb-records.c); the mechanics live in the
   other store-lmdb-*.c files. */

#include "lib.h"
#include "buffer.h"
#include "str-sanitize.h"

#include "loopguard-compat.h"
#include "store-lmdb-private.h"

#include <fcntl.h>
#include <unistd.h>

static bool store_lmdb_claims(const char *location)
{
	/* the driver of last resort: whatever is not a URI is a path */
	return !str_begins_with(location, "redis:");
}

static int
store_lmdb_check_path(const struct loopguard_store_settings *set,
		      const char **error_r)
{
	if (set->location == NULL || set->location[0] != '/') {
		*error_r = t_strdup_printf(
			"loopguard store %s: path is not absolute",
			set->location == NULL ? "(null)" : set->location);
		return -1;
	}
	return 0;
}

static int
store_lmdb_open(const struct loopguard_store_settings *set,
		struct loopguard_store **store_r, const char **error_r)
{
	struct store_lmdb_env *env;
	struct store_lmdb *store;

	if (store_lmdb_check_path(set, error_r) < 0)
		return -1;
	if (store_lmdb_env_get(set, &env, error_r) < 0)
		return -1;
	store = i_new(struct store_lmdb, 1);
	store->env = env;
	store->log_size = set->log_size;
	*store_r = &store->store;
	return 0;
}

static void store_lmdb_close(struct loopguard_store *_store)
{
	struct store_lmdb *store = store_lmdb_cast(_store);
	struct store_lmdb_env *env = store->env;

	/* loopguard-store.c ends a delivery before closing its store */
	i_assert(env->delivery == NULL || env->delivery->store != store ||
		 env->pid != getpid());
	store_lmdb_env_release(&env);
	i_free(store);
}

/* Permission is checked as well, as LMDB's error is no more than a
   string: the caller tells denied access (errno EACCES) from a temporary
   failure. */
static int
store_lmdb_exists(const struct loopguard_store_settings *set,
		  const char **error_r)
{
	const char *paths[2];
	struct stat st;
	unsigned int i;
	int fd, saved_errno;

	if (store_lmdb_check_path(set, error_r) < 0)
		return -1;
	if (stat(set->location, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		saved_errno = errno;
		*error_r = t_strdup_printf("stat(%s) failed: %m",
					   set->location);
		errno = saved_errno;
		return -1;
	}
	paths[0] = set->location;
	paths[1] = store_lmdb_lock_path(set->location);
	for (i = 0; i < N_ELEMENTS(paths); i++) {
		if ((fd = open(paths[i], O_RDWR)) >= 0) {
			i_close_fd(&fd);
			continue;
		}
		if (errno != EACCES)
			continue;
		*error_r = t_strdup_printf("open(%s) failed: %m", paths[i]);
		errno = EACCES;
		return -1;
	}
	return 1;
}

/*
 * Windows
 */

struct store_lmdb_window_update {
	const struct loopguard_window_params *params;
	const unsigned char *message_hash;
	struct loopguard_window_result result;
};

static bool
store_lmdb_window_update(const struct loopguard_codec_record *old,
			 time_t now, buffer_t *new_payload, time_t *expires_r,
			 void *context)
{
	struct store_lmdb_window_update *update = context;

	return loopguard_window_apply(
		old == NULL ? NULL : old->payload,
		old == NULL ? 0 : old->payload_size, update->params, now,
		update->message_hash, TRUE, new_payload, expires_r,
		&update->result);
}

static int
store_lmdb_window_peek(struct loopguard_store *store,
		       const char *handle, const char *key,
		       const struct loopguard_window_params *params,
		       const unsigned char *message_hash, time_t now,
		       struct loopguard_window_result *result_r,
		       const char **error_r)
{
	struct loopguard_codec_record record;
	time_t expires;
	pool_t pool;
	int ret;

	pool = pool_alloconly_create("loopguard window lookup", 1024);
	ret = store_lmdb_lookup(store, LOOPGUARD_CODEC_KIND_WINDOW, handle,
				key, now, pool, &record, error_r);
	if (ret >= 0) {
		(void)loopguard_window_apply(
			ret == 0 ? NULL : record.payload,
			ret == 0 ? 0 : record.payload_size, params, now,
			message_hash, FALSE, NULL, &expires, result_r);
	}
	pool_unref(&pool);
	return ret < 0 ? -1 : 0;
}

static int
store_lmdb_window_check(struct loopguard_store *store,
			const char *handle, const char *key,
			const struct loopguard_window_params *params,
			const unsigned char message_hash[
				LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE],
			time_t now, bool record,
			struct loopguard_window_result *result_r,
			const char **error_r)
{
	struct store_lmdb_window_update update;
	int ret;

	if (!record) {
		return store_lmdb_window_peek(store, handle, key, params,
					      message_hash, now, result_r,
					      error_r);
	}
	i_zero(&update);
	update.params = params;
	update.message_hash = message_hash;
	ret = store_lmdb_update(store, LOOPGUARD_CODEC_KIND_WINDOW, handle,
				key, now, store_lmdb_window_update, &update,
				error_r);
	if (ret == 0)
		*result_r = update.result;
	return ret;
}

struct store_lmdb_window_iterate {
	struct loopguard_store *store;
	const char *handle;
	time_t now;
	loopguard_store_window_callback_t *callback;
	void *context;
};

static int
store_lmdb_window_visit(const struct loopguard_codec_record *record,
			void *context)
{
	struct store_lmdb_window_iterate *ctx = context;
	struct loopguard_store_window window;

	if (record->kind != LOOPGUARD_CODEC_KIND_WINDOW)
		return 0;
	if (ctx->handle != NULL && strcmp(record->handle, ctx->handle) != 0)
		return 0;
	i_zero(&window);
	if (!loopguard_window_decode(record->payload, record->payload_size,
				     ctx->now, &window.state)) {
		e_warning(ctx->store->event,
			  "key '%s' of handle '%s' has an unreadable value "
			  "(%zu bytes), skipped",
			  str_sanitize(record->key, 256),
			  str_sanitize(record->handle, 64),
			  record->payload_size);
		return 0;
	}
	window.handle = record->handle;
	window.key = record->key;
	return ctx->callback(&window, ctx->context);
}

static int
store_lmdb_window_iterate(struct loopguard_store *store,
			  const char *handle, time_t now,
			  loopguard_store_window_callback_t *callback,
			  void *context, const char **error_r)
{
	struct store_lmdb_window_iterate ctx = {
		.store = store,
		.handle = handle,
		.now = now,
		.callback = callback,
		.context = context,
	};

	return store_lmdb_iterate(store, now, store_lmdb_window_visit, &ctx,
				  error_r);
}

static int
store_lmdb_window_delete(struct loopguard_store *store,
			 const char *handle, const char *key,
			 const char **error_r)
{
	return store_lmdb_delete(store, LOOPGUARD_CODEC_KIND_WINDOW, handle,
				 key, error_r);
}

/*
 * Fingerprints
 */

/* Each sighting restarts the period, so a loop that keeps going keeps
   being caught. A fingerprint is stored as a compact record (about 62
   bytes of file, where the general form took about 257): a million of
   them fit into a store of the default size. Stores written before hold
   records of the general form keyed by the whole fingerprint: they are
   still honoured until they expire, and the sweep then drops them. Once
   none is left, a check is one lookup again. */
struct store_lmdb_fingerprint_update {
	unsigned int period;
	/* from a record of the general form, 0 when there is none */
	uint64_t legacy_last_seen;
	bool seen;
	/* the stored payload was not a fingerprint's */
	bool ignored;
	size_t ignored_size;
};

static bool
store_lmdb_fingerprint_update(const struct loopguard_codec_record *old,
			      time_t now, buffer_t *new_payload,
			      time_t *expires_r, void *context)
{
	struct store_lmdb_fingerprint_update *upd = context;
	uint64_t last_seen = upd->legacy_last_seen, compact_seen;

	upd->ignored = FALSE;
	if (old != NULL &&
	    loopguard_codec_fingerprint_read_compact(old->payload,
						     old->payload_size,
						     &compact_seen))
		last_seen = I_MAX(last_seen, compact_seen);
	else if (old != NULL) {
		upd->ignored = TRUE;
		upd->ignored_size = old->payload_size;
	}
	upd->seen = last_seen != 0 && last_seen + upd->period > (uint64_t)now;
	loopguard_codec_fingerprint_write_compact(now, new_payload);
	*expires_r = now + upd->period;
	if (old != NULL && old->expires > *expires_r)
		*expires_r = old->expires;
	return TRUE;
}

/* No version writes records of the general form any more, so a file
   found without them is looked at again only this often; with them, as
   often, until the sweep has dropped the last one. */
#define STORE_LMDB_LEGACY_RECHECK_SECS 3600

static int
store_lmdb_fingerprint_legacy_present(struct store_lmdb *store, time_t now,
				      bool *present_r, const char **error_r)
{
	struct store_lmdb_env *env = store->env;

	if (env->legacy_checked == 0 || now < env->legacy_checked ||
	    now - env->legacy_checked >= STORE_LMDB_LEGACY_RECHECK_SECS) {
		if (store_lmdb_kind_present(store,
					    LOOPGUARD_CODEC_KIND_FINGERPRINT,
					    &env->legacy_fingerprints,
					    error_r) < 0)
			return -1;
		env->legacy_checked = now;
	}
	*present_r = env->legacy_fingerprints;
	return 0;
}

/* When a record of the general form last saw the fingerprint, or 0. Inside
   the delivery's transaction, as the update that follows. */
static int
store_lmdb_fingerprint_legacy(struct loopguard_store *store,
			      const unsigned char fingerprint[
				LOOPGUARD_STORE_FINGERPRINT_SIZE],
			      time_t now, uint64_t *last_seen_r,
			      const char **error_r)
{
	struct loopguard_codec_record record;
	bool present;
	int ret;

	*last_seen_r = 0;
	if (store_lmdb_fingerprint_legacy_present(store_lmdb_cast(store), now,
						  &present, error_r) < 0)
		return -1;
	if (!present)
		return 0;
	ret = store_lmdb_lookup(store, LOOPGUARD_CODEC_KIND_FINGERPRINT, "",
				loopguard_codec_fingerprint_key(fingerprint),
				now, pool_datastack_create(), &record,
				error_r);
	if (ret > 0 &&
	    !loopguard_codec_fingerprint_read(record.payload,
					      record.payload_size,
					      last_seen_r))
		*last_seen_r = 0;
	return ret < 0 ? -1 : 0;
}

static int
store_lmdb_fingerprint_check(struct loopguard_store *store,
			     const unsigned char fingerprint[
				LOOPGUARD_STORE_FINGERPRINT_SIZE],
			     unsigned int period, time_t now,
			     bool *seen_r, const char **error_r)
{
	struct store_lmdb_fingerprint_update upd;
	int ret;

	i_zero(&upd);
	upd.period = period;
	if (store_lmdb_fingerprint_legacy(store, fingerprint, now,
					  &upd.legacy_last_seen, error_r) < 0)
		return -1;
	ret = store_lmdb_update(store, LOOPGUARD_CODEC_KIND_COMPACT, "",
			loopguard_codec_fingerprint_compact_key(fingerprint),
			now, store_lmdb_fingerprint_update, &upd, error_r);
	if (ret < 0)
		return ret;
	if (upd.ignored) {
		/* logged once the write transaction has ended */
		e_warning(store->event, "ignoring a fingerprint record of "
			  "%zu bytes", upd.ignored_size);
	}
	*seen_r = upd.seen;
	return 0;
}

const struct loopguard_store_driver loopguard_store_driver_lmdb = {
	.name = "lmdb",
	.claims = store_lmdb_claims,
	.v = {
		.open = store_lmdb_open,
		.close = store_lmdb_close,
		.exists = store_lmdb_exists,
		.keep_idle = store_lmdb_env_keep_idle,

		.delivery_begin = store_lmdb_delivery_begin,
		.delivery_commit = store_lmdb_delivery_commit,
		.delivery_abort = store_lmdb_delivery_abort,

		.window_check = store_lmdb_window_check,
		.window_iterate = store_lmdb_window_iterate,
		.window_delete = store_lmdb_window_delete,

		.fingerprint_check = store_lmdb_fingerprint_check,

		.log_append = store_lmdb_log_append,
		.log_iterate = store_lmdb_log_iterate,

		.purge = store_lmdb_purge,
	},
};
