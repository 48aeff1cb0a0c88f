/* The store API: chooses the driver by the location's form and keeps the
   delivery's state, so that every driver sees the same calls. */

#include "lib.h"

#include "loopguard-compat.h"
#include "loopguard-store-private.h"

struct loopguard_store_delivery {
	struct loopguard_store *store;
};

static const struct loopguard_store_driver *const loopguard_store_drivers[] = {
#ifdef HAVE_HIREDIS
	&loopguard_store_driver_redis,
#endif
	/* last: a location no other driver claims is a path */
	&loopguard_store_driver_lmdb,
};

static const struct loopguard_store_driver *
loopguard_store_driver_find(const char *location, const char **error_r)
{
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(loopguard_store_drivers); i++) {
		if (loopguard_store_drivers[i]->claims(location))
			return loopguard_store_drivers[i];
	}
	/* a redis: location may hold a password: never shown */
	*error_r = str_begins_with(location, "redis:") ?
		"sieve_loopguard_db=redis:...: no store driver for this "
		"location (built without Redis support)" :
		t_strdup_printf("sieve_loopguard_db=%s: no store driver for "
				"this location", location);
	return NULL;
}

int loopguard_store_open(const struct loopguard_store_settings *set,
			 struct loopguard_store **store_r,
			 const char **error_r)
{
	const struct loopguard_store_driver *driver;
	struct loopguard_store *store;

	*store_r = NULL;
	if ((driver = loopguard_store_driver_find(set->location,
						  error_r)) == NULL)
		return -1;
	if (driver->v.open(set, &store, error_r) < 0)
		return -1;
	store->driver = driver;
	store->event = event_create(set->event);
	event_add_category(store->event, NULL);
	event_set_append_log_prefix(store->event, "loopguard store: ");
	*store_r = store;
	return 0;
}

void loopguard_store_close(struct loopguard_store **_store)
{
	struct loopguard_store *store = *_store;
	struct event *event;

	if (store == NULL)
		return;
	*_store = NULL;
	loopguard_store_delivery_abort(&store->delivery);
	event = store->event;
	store->driver->v.close(store);
	event_unref(&event);
}

int loopguard_store_exists(const struct loopguard_store_settings *set,
			   const char **error_r)
{
	const struct loopguard_store_driver *driver;

	if ((driver = loopguard_store_driver_find(set->location,
						  error_r)) == NULL)
		return -1;
	return driver->v.exists(set, error_r);
}

void loopguard_store_keep_idle(bool keep)
{
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(loopguard_store_drivers); i++)
		loopguard_store_drivers[i]->v.keep_idle(keep);
}

/*
 * The delivery
 */

int loopguard_store_delivery_begin(struct loopguard_store *store,
				   struct loopguard_store_delivery **delivery_r,
				   const char **error_r)
{
	struct loopguard_store_delivery *delivery;

	*delivery_r = NULL;
	if (store->delivery != NULL) {
		*error_r = "a delivery of this store is already open";
		return -1;
	}
	if (store->driver->v.delivery_begin(store, error_r) < 0)
		return -1;
	delivery = i_new(struct loopguard_store_delivery, 1);
	delivery->store = store;
	store->delivery = delivery;
	*delivery_r = delivery;
	return 0;
}

int loopguard_store_delivery_commit(struct loopguard_store_delivery **_delivery,
				    const char **error_r)
{
	struct loopguard_store_delivery *delivery = *_delivery;
	struct loopguard_store *store = delivery->store;

	*_delivery = NULL;
	i_assert(store->delivery == delivery);
	store->delivery = NULL;
	i_free(delivery);
	return store->driver->v.delivery_commit(store, error_r);
}

void loopguard_store_delivery_abort(struct loopguard_store_delivery **_delivery)
{
	struct loopguard_store_delivery *delivery = *_delivery;
	struct loopguard_store *store;

	if (delivery == NULL)
		return;
	*_delivery = NULL;
	store = delivery->store;
	i_assert(store->delivery == delivery);
	store->delivery = NULL;
	i_free(delivery);
	store->driver->v.delivery_abort(store);
}

/*
 * Windows, fingerprints, the log, maintenance
 */

int loopguard_store_window_check(struct loopguard_store *store,
				 const char *handle, const char *key,
				 const struct loopguard_window_params *params,
				 const unsigned char message_hash[
					LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE],
				 time_t now, bool record,
				 struct loopguard_window_result *result_r,
				 const char **error_r)
{
	i_zero(result_r);
	return store->driver->v.window_check(store, handle, key, params,
					     message_hash, now, record,
					     result_r, error_r);
}

int loopguard_store_window_iterate(struct loopguard_store *store,
				   const char *handle, time_t now,
				   loopguard_store_window_callback_t *callback,
				   void *context, const char **error_r)
{
	return store->driver->v.window_iterate(store, handle, now, callback,
					       context, error_r);
}

int loopguard_store_window_delete(struct loopguard_store *store,
				  const char *handle, const char *key,
				  const char **error_r)
{
	return store->driver->v.window_delete(store, handle, key, error_r);
}

int loopguard_store_fingerprint_check(struct loopguard_store *store,
				      const unsigned char fingerprint[
					LOOPGUARD_STORE_FINGERPRINT_SIZE],
				      unsigned int period, time_t now,
				      bool *seen_r, const char **error_r)
{
	*seen_r = FALSE;
	return store->driver->v.fingerprint_check(store, fingerprint, period,
						  now, seen_r, error_r);
}

int loopguard_store_log_append(struct loopguard_store *store,
			       const struct loopguard_store_event *event,
			       const char **error_r)
{
	return store->driver->v.log_append(store, event, error_r);
}

int loopguard_store_log_iterate(struct loopguard_store *store, time_t since,
				loopguard_store_log_callback_t *callback,
				void *context, const char **error_r)
{
	return store->driver->v.log_iterate(store, since, callback, context,
					    error_r);
}

int loopguard_store_purge(struct loopguard_store *store, time_t now, bool all,
			  unsigned int *purged_r, const char **error_r)
{
	*purged_r = 0;
	return store->driver->v.purge(store, now, all, purged_r, error_r);
}
