/* Reads, validates and defaults the sieve_loopguard_* settings. */

#include "lib.h"

#include "sieve-common.h"
#include "sieve-settings.h"

#include "loopguard-settings.h"

#define LOOPGUARD_SETTING_PREFIX "sieve_loopguard_"

static void
loopguard_settings_get_uint(struct sieve_instance *svinst, const char *name,
			    unsigned int max, unsigned int *value)
{
	const char *setting = t_strconcat(LOOPGUARD_SETTING_PREFIX, name, NULL);
	unsigned long long int number;

	if (!sieve_setting_get_uint_value(svinst, setting, &number))
		return;
	if (number > max) {
		e_warning(svinst->event, "%s: value %llu is too large "
			  "(maximum %u), using the default %u",
			  setting, number, max, *value);
		return;
	}
	*value = (unsigned int)number;
}

static void
loopguard_settings_get_duration(struct sieve_instance *svinst,
				const char *name, unsigned int *value)
{
	const char *setting = t_strconcat(LOOPGUARD_SETTING_PREFIX, name, NULL);
	sieve_number_t seconds;

	if (!sieve_setting_get_duration_value(svinst, setting, &seconds))
		return;
	if (seconds > UINT_MAX) {
		e_warning(svinst->event, "%s: duration is too long, "
			  "using the default %u seconds", setting, *value);
		return;
	}
	*value = (unsigned int)seconds;
}

static void
loopguard_settings_get_on_error(struct sieve_instance *svinst,
				enum loopguard_on_error *value)
{
	const char *setting = LOOPGUARD_SETTING_PREFIX"on_error";
	const char *str = sieve_setting_get(svinst, setting);

	if (str == NULL || *str == '\0')
		return;
	if (strcasecmp(str, "keep") == 0)
		*value = LOOPGUARD_ON_ERROR_KEEP;
	else if (strcasecmp(str, "tempfail") == 0)
		*value = LOOPGUARD_ON_ERROR_TEMPFAIL;
	else {
		e_warning(svinst->event, "%s: invalid value '%s' "
			  "(expected keep or tempfail), using keep",
			  setting, str);
		*value = LOOPGUARD_ON_ERROR_KEEP;
	}
}

void loopguard_settings_read(struct sieve_instance *svinst, pool_t pool,
			     struct loopguard_settings *set)
{
	const char *str;
	size_t size;
	bool sync;

	i_zero(set);
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
		str = sieve_setting_get(svinst,
					LOOPGUARD_SETTING_PREFIX"db");
		if (str != NULL && *str != '\0')
			set->db_path = p_strdup(pool, str);

		if (sieve_setting_get_size_value(
			svinst, LOOPGUARD_SETTING_PREFIX"db_max_size",
			&size)) {
			if (size < LOOPGUARD_MIN_DB_MAX_SIZE) {
				e_warning(svinst->event,
					  LOOPGUARD_SETTING_PREFIX"db_max_size: "
					  "%zu is below the minimum of %u "
					  "bytes, using the default", size,
					  LOOPGUARD_MIN_DB_MAX_SIZE);
			} else {
				set->db_max_size = size;
			}
		}
		if (sieve_setting_get_bool_value(
			svinst, LOOPGUARD_SETTING_PREFIX"sync", &sync))
			set->sync = sync;
		loopguard_settings_get_on_error(svinst, &set->on_error);

		loopguard_settings_get_uint(svinst, "max_count", UINT_MAX,
					    &set->max_count);
		loopguard_settings_get_duration(svinst, "max_period",
						&set->max_period);
		loopguard_settings_get_uint(svinst, "hops", UINT_MAX,
					    &set->hops);
		loopguard_settings_get_duration(svinst, "duplicate_period",
						&set->duplicate_period);
		loopguard_settings_get_uint(svinst, "ratelimit_count",
					    set->max_count,
					    &set->ratelimit_count);
		loopguard_settings_get_duration(svinst, "ratelimit_period",
						&set->ratelimit_period);
		loopguard_settings_get_duration(svinst, "ratelimit_lock",
						&set->ratelimit_lock);
		loopguard_settings_get_uint(svinst, "log_size", UINT_MAX,
					    &set->log_size);
	} T_END;

	/* Defaults obey the maxima too, so a script without tags never
	   exceeds what the administrator allowed. */
	set->ratelimit_count = I_MIN(set->ratelimit_count, set->max_count);
	if (set->max_period > 0) {
		set->ratelimit_period = I_MIN(set->ratelimit_period,
					      set->max_period);
		set->ratelimit_lock = I_MIN(set->ratelimit_lock,
					    set->max_period);
		set->duplicate_period = I_MIN(set->duplicate_period,
					      set->max_period);
	}
}
