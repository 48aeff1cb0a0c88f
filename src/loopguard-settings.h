#ifndef LOOPGUARD_SETTINGS_H
#define LOOPGUARD_SETTINGS_H

/* The plugin { sieve_loopguard_* } settings: validation and defaults,
   shared by the Sieve and doveadm plugins. Needs neither: each passes a
   function that looks a setting up. */

struct event;

enum loopguard_on_error {
	/* the test is false, a warning is logged, the script goes on */
	LOOPGUARD_ON_ERROR_KEEP = 0,
	/* the delivery is deferred */
	LOOPGUARD_ON_ERROR_TEMPFAIL,
};

struct loopguard_settings {
	/* as configured; "~/" is resolved against the home directory only
	   when the store is first used */
	const char *db_path;
	uoff_t db_max_size;
	/* sieve_loopguard_db_allow_network_fs: a store on NFS, SMB/CIFS or
	   another network file system is refused unless this is set */
	bool db_allow_network_fs;
	bool sync;
	enum loopguard_on_error on_error;

	unsigned int hops;
	unsigned int duplicate_period;

	unsigned int ratelimit_count;
	unsigned int ratelimit_period;
	unsigned int ratelimit_lock;

	/* 0: no maximum */
	unsigned int max_count;
	unsigned int max_period;
	unsigned int log_size;
};

#define LOOPGUARD_SETTING_PREFIX "sieve_loopguard_"

#define LOOPGUARD_DEFAULT_DB_PATH "~/.dovecot.loopguard"
#define LOOPGUARD_DEFAULT_DB_MAX_SIZE (64 * 1024 * 1024)
#define LOOPGUARD_DEFAULT_HOPS 30
#define LOOPGUARD_DEFAULT_DUPLICATE_PERIOD (12 * 60 * 60)
#define LOOPGUARD_DEFAULT_RATELIMIT_COUNT 23
#define LOOPGUARD_DEFAULT_RATELIMIT_PERIOD (12 * 60 * 60)
#define LOOPGUARD_DEFAULT_RATELIMIT_LOCK 0
#define LOOPGUARD_DEFAULT_MAX_COUNT 1000
#define LOOPGUARD_DEFAULT_MAX_PERIOD (7 * 24 * 60 * 60)
#define LOOPGUARD_DEFAULT_LOG_SIZE 1000

/* The smallest map that still holds LMDB's meta pages and a few records. */
#define LOOPGUARD_MIN_DB_MAX_SIZE (128 * 1024)
/* The largest sieve_loopguard_max_count: every counted message of a key is
   kept in its record, so a larger limit only makes records huge. */
#define LOOPGUARD_MAX_COUNT_LIMIT 100000

/* Returns the value of the setting called name (prefix included), or NULL
   when it is not set. */
typedef const char *loopguard_settings_get_t(void *context, const char *name);

/* Fills set with the defaults, overridden by the values get() returns. An
   invalid value logs a warning on event and leaves the default in place.
   Strings are allocated from pool. */
void loopguard_settings_parse(struct loopguard_settings *set, pool_t pool,
			      loopguard_settings_get_t *get, void *context,
			      struct event *event);

#endif
