#ifndef LOOPGUARD_SETTINGS_H
#define LOOPGUARD_SETTINGS_H

/* The plugin { sieve_loopguard_* } settings, read once per Sieve instance. */

struct sieve_instance;

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
	bool sync;
	enum loopguard_on_error on_error;

	unsigned int hops;
	unsigned int duplicate_period;

	unsigned int ratelimit_count;
	unsigned int ratelimit_period;
	unsigned int ratelimit_lock;

	unsigned int max_count;
	unsigned int max_period;
	unsigned int log_size;
};

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

/* Fills set with the configured values; an invalid value logs a warning and
   leaves the default in place. Strings are allocated from pool. */
void loopguard_settings_read(struct sieve_instance *svinst, pool_t pool,
			     struct loopguard_settings *set);

#endif
