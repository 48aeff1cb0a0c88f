#ifndef LOOPGUARD_SETTINGS_H
#define LOOPGUARD_SETTINGS_H

/* The sieve_loopguard_* settings: defaults, limits and how they are read,
   shared by the Sieve and doveadm plugins. Dovecot 2.4 declares them to its
   config process (loopguard-settings-defines.c); Dovecot 2.3 hands them over
   as plugin { } strings (loopguard-settings-plugin-env.c). */

struct event;
struct setting_parser_info;

enum loopguard_on_error {
	/* the test is false, a warning is logged, the script goes on */
	LOOPGUARD_ON_ERROR_KEEP = 0,
	/* the delivery is deferred */
	LOOPGUARD_ON_ERROR_TEMPFAIL,
};

struct loopguard_settings {
	/* Dovecot 2.4's settings parser allocates the struct from it */
	pool_t pool;
	/* as configured; "~/" is resolved against the home directory only
	   when the store is first used */
	const char *db_path;
	uoff_t db_max_size;
	/* sieve_loopguard_db_allow_network_fs: a store on NFS, SMB/CIFS or
	   another network file system is refused unless this is set */
	bool db_allow_network_fs;
	bool sync;
	enum loopguard_on_error on_error;
	/* Dovecot 2.4: the setting as given, turned into on_error by the
	   settings check */
	const char *on_error_name;

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

/* Lowers the defaults to the maxima (0 is no maximum), so that a script
   without tags never exceeds what the administrator allowed. */
void loopguard_settings_apply_maxima(struct loopguard_settings *set);

/* Dovecot 2.4: the settings as the config process declares them. */
extern const struct setting_parser_info loopguard_setting_parser_info;

/* Dovecot 2.4: copies the settings in force for event (invalid values were
   refused by the config process already) into set_r, strings allocated
   from pool. Returns 0, or -1 with *error_r set. */
int loopguard_settings_read(struct event *event, pool_t pool,
			    struct loopguard_settings *set_r,
			    const char **error_r);

/* Dovecot 2.3: returns the value of the setting called name (prefix included), or NULL
   when it is not set. */
typedef const char *loopguard_settings_get_t(void *context, const char *name);

/* Dovecot 2.3: fills set with the defaults, overridden by the values get() returns. An
   invalid value logs a warning on event and leaves the default in place.
   Strings are allocated from pool. */
void loopguard_settings_parse(struct loopguard_settings *set, pool_t pool,
			      loopguard_settings_get_t *get, void *context,
			      struct event *event);

#endif
