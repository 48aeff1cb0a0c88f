/* Dovecot 2.3: validates and defaults the sieve_loopguard_* settings of
   plugin { }, which arrive as strings. An invalid value warns and leaves
   the default, as Pigeonhole 0.5's own extensions do. */

#include "lib.h"
#include "strnum.h"

#include "loopguard-compat.h"

struct loopguard_settings_source {
	loopguard_settings_get_t *get;
	void *context;
	struct event *event;
};

/* Returns the value of sieve_loopguard_<name>, or NULL when it is unset
   or empty. */
static const char *
loopguard_settings_lookup(const struct loopguard_settings_source *src,
			  const char *name, const char **setting_r)
{
	const char *value;

	*setting_r = t_strconcat(LOOPGUARD_SETTING_PREFIX, name, NULL);
	value = src->get(src->context, *setting_r);
	return value == NULL || *value == '\0' ? NULL : value;
}

static void
loopguard_settings_invalid(const struct loopguard_settings_source *src,
			   const char *setting, const char *value,
			   const char *error, const char *default_value)
{
	e_warning(src->event, "%s: invalid value '%s' (%s), using the "
		  "default %s", setting, value, error, default_value);
}

/* max 0: no maximum */
static void
loopguard_settings_get_uint(const struct loopguard_settings_source *src,
			    const char *name, unsigned int max,
			    unsigned int *value)
{
	const char *setting, *str;
	unsigned int number;

	if ((str = loopguard_settings_lookup(src, name, &setting)) == NULL)
		return;
	if (str_to_uint(str, &number) < 0) {
		loopguard_settings_invalid(src, setting, str,
					   str_num_error(str),
					   dec2str(*value));
		return;
	}
	if (max > 0 && number > max) {
		e_warning(src->event, "%s: value %u is too large "
			  "(maximum %u), using the default %u",
			  setting, number, max, *value);
		return;
	}
	*value = number;
}

static void
loopguard_settings_get_duration(const struct loopguard_settings_source *src,
				const char *name, unsigned int *value)
{
	const char *setting, *str, *error;
	unsigned int seconds;

	if ((str = loopguard_settings_lookup(src, name, &setting)) == NULL)
		return;
	if (str_parse_get_interval(str, &seconds, &error) < 0) {
		loopguard_settings_invalid(src, setting, str, error,
			t_strdup_printf("%u seconds", *value));
		return;
	}
	*value = seconds;
}

static void
loopguard_settings_get_size(const struct loopguard_settings_source *src,
			    const char *name, uoff_t min, uoff_t *value)
{
	const char *setting, *str, *error;
	uoff_t size;

	if ((str = loopguard_settings_lookup(src, name, &setting)) == NULL)
		return;
	if (str_parse_get_size(str, &size, &error) < 0) {
		loopguard_settings_invalid(src, setting, str, error,
			t_strdup_printf("%"PRIuUOFF_T" bytes", *value));
		return;
	}
	if (size < min) {
		e_warning(src->event, "%s: %"PRIuUOFF_T" is below the minimum "
			  "of %"PRIuUOFF_T" bytes, using the default",
			  setting, size, min);
		return;
	}
	*value = size;
}

static void
loopguard_settings_get_bool(const struct loopguard_settings_source *src,
			    const char *name, bool *value)
{
	const char *setting, *str;

	if ((str = loopguard_settings_lookup(src, name, &setting)) == NULL)
		return;
	/* Dovecot 2.3's own rule for booleans (its settings parser does not
	   export it) */
	if (strcasecmp(str, "yes") == 0 || strcasecmp(str, "y") == 0 ||
	    strcmp(str, "1") == 0)
		*value = TRUE;
	else if (strcasecmp(str, "no") == 0)
		*value = FALSE;
	else {
		loopguard_settings_invalid(src, setting, str,
					   "use yes or no",
					   *value ? "yes" : "no");
	}
}

static void
loopguard_settings_get_on_error(const struct loopguard_settings_source *src,
				enum loopguard_on_error *value)
{
	const char *setting, *str;

	if ((str = loopguard_settings_lookup(src, "on_error",
					     &setting)) == NULL)
		return;
	if (strcasecmp(str, "keep") == 0)
		*value = LOOPGUARD_ON_ERROR_KEEP;
	else if (strcasecmp(str, "tempfail") == 0)
		*value = LOOPGUARD_ON_ERROR_TEMPFAIL;
	else {
		e_warning(src->event, "%s: invalid value '%s' "
			  "(expected keep or tempfail), using keep",
			  setting, str);
		*value = LOOPGUARD_ON_ERROR_KEEP;
	}
}

void loopguard_settings_parse(struct loopguard_settings *set, pool_t pool,
			      loopguard_settings_get_t *get, void *context,
			      struct event *event)
{
	struct loopguard_settings_source src = {
		.get = get,
		.context = context,
		.event = event,
	};
	const char *setting, *str;

	i_zero(set);
	set->pool = pool;
	set->db_path = LOOPGUARD_DEFAULT_DB_PATH;
	set->db_max_size = LOOPGUARD_DEFAULT_DB_MAX_SIZE;
	set->sync = TRUE;
	set->on_error = LOOPGUARD_ON_ERROR_KEEP;
	set->hops = LOOPGUARD_DEFAULT_HOPS;
	set->duplicate_period = LOOPGUARD_DEFAULT_DUPLICATE_PERIOD;
	set->ratelimit_count = LOOPGUARD_DEFAULT_RATELIMIT_COUNT;
	set->ratelimit_period = LOOPGUARD_DEFAULT_RATELIMIT_PERIOD;
	set->ratelimit_lock = LOOPGUARD_DEFAULT_RATELIMIT_LOCK;
	set->max_count = LOOPGUARD_DEFAULT_MAX_COUNT;
	set->max_period = LOOPGUARD_DEFAULT_MAX_PERIOD;
	set->log_size = LOOPGUARD_DEFAULT_LOG_SIZE;

	T_BEGIN {
		str = loopguard_settings_lookup(&src, "db", &setting);
		if (str != NULL)
			set->db_path = p_strdup(pool, str);
		loopguard_settings_get_size(&src, "db_max_size",
					    LOOPGUARD_MIN_DB_MAX_SIZE,
					    &set->db_max_size);
		loopguard_settings_get_bool(&src, "db_allow_network_fs",
					    &set->db_allow_network_fs);
		loopguard_settings_get_bool(&src, "sync", &set->sync);
		loopguard_settings_get_on_error(&src, &set->on_error);

		loopguard_settings_get_uint(&src, "max_count",
					    LOOPGUARD_MAX_COUNT_LIMIT,
					    &set->max_count);
		loopguard_settings_get_duration(&src, "max_period",
						&set->max_period);
		loopguard_settings_get_uint(&src, "hops", 0, &set->hops);
		loopguard_settings_get_duration(&src, "duplicate_period",
						&set->duplicate_period);
		loopguard_settings_get_uint(&src, "ratelimit_count",
					    set->max_count,
					    &set->ratelimit_count);
		loopguard_settings_get_duration(&src, "ratelimit_period",
						&set->ratelimit_period);
		if (set->ratelimit_period == 0) {
			/* as :seconds 0, which does not compile */
			e_warning(event, LOOPGUARD_SETTING_PREFIX
				  "ratelimit_period: 0 would turn ratelimit "
				  "off, using the default of %u seconds",
				  LOOPGUARD_DEFAULT_RATELIMIT_PERIOD);
			set->ratelimit_period =
				LOOPGUARD_DEFAULT_RATELIMIT_PERIOD;
		}
		loopguard_settings_get_duration(&src, "ratelimit_lock",
						&set->ratelimit_lock);
		loopguard_settings_get_uint(&src, "log_size", 0,
					    &set->log_size);
	} T_END;

	loopguard_settings_apply_maxima(set);
}
