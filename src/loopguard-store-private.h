#ifndef LOOPGUARD_STORE_PRIVATE_H
#define LOOPGUARD_STORE_PRIVATE_H

/* What a store driver implements. loopguard-store.c checks the arguments,
   keeps the delivery's state and calls these; a driver sees only calls
   that make sense (no delivery function without an open delivery, at most
   one delivery at a time). */

#include "loopguard-store.h"

struct loopguard_store_vfuncs {
	/* Returns -1 with *error_r set, or 0 with *store_r allocated by the
	   driver (i_new), its base fields left for loopguard-store.c. */
	int (*open)(const struct loopguard_store_settings *set,
		    struct loopguard_store **store_r, const char **error_r);
	void (*close)(struct loopguard_store *store);
	int (*exists)(const struct loopguard_store_settings *set,
		      const char **error_r);
	/* The driver's idle cache (see loopguard_store_keep_idle()). */
	void (*keep_idle)(bool keep);

	int (*delivery_begin)(struct loopguard_store *store,
			      const char **error_r);
	int (*delivery_commit)(struct loopguard_store *store,
			       const char **error_r);
	void (*delivery_abort)(struct loopguard_store *store);

	int (*window_check)(struct loopguard_store *store,
			    const char *handle, const char *key,
			    const struct loopguard_window_params *params,
			    const unsigned char message_hash[
				LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE],
			    time_t now, bool record,
			    struct loopguard_window_result *result_r,
			    const char **error_r);
	int (*window_iterate)(struct loopguard_store *store,
			      const char *handle, time_t now,
			      loopguard_store_window_callback_t *callback,
			      void *context, const char **error_r);
	int (*window_delete)(struct loopguard_store *store,
			     const char *handle, const char *key,
			     const char **error_r);

	int (*fingerprint_check)(struct loopguard_store *store,
				 const unsigned char fingerprint[
					LOOPGUARD_STORE_FINGERPRINT_SIZE],
				 unsigned int period, time_t now,
				 bool *seen_r, const char **error_r);

	int (*log_append)(struct loopguard_store *store,
			  const struct loopguard_store_event *event,
			  const char **error_r);
	int (*log_iterate)(struct loopguard_store *store, time_t since,
			   loopguard_store_log_callback_t *callback,
			   void *context, const char **error_r);

	int (*purge)(struct loopguard_store *store, time_t now, bool all,
		     unsigned int *purged_r, const char **error_r);
};

struct loopguard_store_driver {
	/* "lmdb", "redis" */
	const char *name;
	/* Whether location is this driver's: the first driver that claims
	   it gets it. */
	bool (*claims)(const char *location);
	struct loopguard_store_vfuncs v;
};

/* A driver's store struct embeds this as its first member. */
struct loopguard_store {
	const struct loopguard_store_driver *driver;
	/* "loopguard store" child of the settings' event */
	struct event *event;
	struct loopguard_store_delivery *delivery;
};

extern const struct loopguard_store_driver loopguard_store_driver_lmdb;
#ifdef HAVE_HIREDIS
extern const struct loopguard_store_driver loopguard_store_driver_redis;
#endif

#endif
