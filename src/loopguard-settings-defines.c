/* Dovecot 2.4: the sieve_loopguard_* settings declared with their types and
   defaults, so that doveconf lists them and the config process refuses a
   misspelt name or an invalid value, as it does for Pigeonhole's own. */

#include "lib.h"
#include "settings.h"
#include "settings-parser.h"

#include "loopguard-settings.h"

#undef DEF
#define DEF(type, name, field) \
	SETTING_DEFINE_STRUCT_##type(LOOPGUARD_SETTING_PREFIX name, field, \
				     struct loopguard_settings)

static const struct setting_define loopguard_setting_defines[] = {
	DEF(STR, "db", db_path),
	DEF(SIZE, "db_max_size", db_max_size),
	DEF(BOOL, "db_allow_network_fs", db_allow_network_fs),
	DEF(BOOL, "sync", sync),
	DEF(ENUM, "on_error", on_error_name),

	DEF(UINT, "hops", hops),
	DEF(TIME, "duplicate_period", duplicate_period),

	DEF(UINT, "ratelimit_count", ratelimit_count),
	DEF(TIME, "ratelimit_period", ratelimit_period),
	DEF(TIME, "ratelimit_lock", ratelimit_lock),

	DEF(UINT, "max_count", max_count),
	DEF(TIME, "max_period", max_period),
	DEF(UINT, "log_size", log_size),

	SETTING_DEFINE_LIST_END,
};

static const struct loopguard_settings loopguard_default_settings = {
	.db_path = LOOPGUARD_DEFAULT_DB_PATH,
	.db_max_size = LOOPGUARD_DEFAULT_DB_MAX_SIZE,
	.sync = TRUE,
	/* the first is the default */
	.on_error_name = "keep:tempfail",

	.hops = LOOPGUARD_DEFAULT_HOPS,
	.duplicate_period = LOOPGUARD_DEFAULT_DUPLICATE_PERIOD,

	.ratelimit_count = LOOPGUARD_DEFAULT_RATELIMIT_COUNT,
	.ratelimit_period = LOOPGUARD_DEFAULT_RATELIMIT_PERIOD,
	.ratelimit_lock = LOOPGUARD_DEFAULT_RATELIMIT_LOCK,

	.max_count = LOOPGUARD_DEFAULT_MAX_COUNT,
	.max_period = LOOPGUARD_DEFAULT_MAX_PERIOD,
	.log_size = LOOPGUARD_DEFAULT_LOG_SIZE,
};

/* Runs in the config process too, so doveconf reports what it refuses. */
static bool
loopguard_settings_check(void *_set, pool_t pool ATTR_UNUSED,
			 const char **error_r)
{
	struct loopguard_settings *set = _set;

	if (set->db_max_size < LOOPGUARD_MIN_DB_MAX_SIZE) {
		*error_r = t_strdup_printf(
			LOOPGUARD_SETTING_PREFIX"db_max_size: %"PRIuUOFF_T
			" is below the minimum of %u bytes",
			set->db_max_size, LOOPGUARD_MIN_DB_MAX_SIZE);
		return FALSE;
	}
	if (set->max_count > LOOPGUARD_MAX_COUNT_LIMIT) {
		*error_r = t_strdup_printf(
			LOOPGUARD_SETTING_PREFIX"max_count: value %u is too "
			"large (maximum %u)", set->max_count,
			LOOPGUARD_MAX_COUNT_LIMIT);
		return FALSE;
	}
	if (set->ratelimit_period == 0) {
		/* as :seconds 0, which does not compile */
		*error_r = LOOPGUARD_SETTING_PREFIX"ratelimit_period: 0 "
			"would turn ratelimit off";
		return FALSE;
	}
	if (*set->db_path == '\0') {
		*error_r = LOOPGUARD_SETTING_PREFIX"db must not be empty";
		return FALSE;
	}
	set->on_error = strcmp(set->on_error_name, "tempfail") == 0 ?
		LOOPGUARD_ON_ERROR_TEMPFAIL : LOOPGUARD_ON_ERROR_KEEP;
	loopguard_settings_apply_maxima(set);
	return TRUE;
}

const struct setting_parser_info loopguard_setting_parser_info = {
	.name = "sieve_loopguard",

	.defines = loopguard_setting_defines,
	.defaults = &loopguard_default_settings,

	.struct_size = sizeof(struct loopguard_settings),
	.pool_offset1 = 1 + offsetof(struct loopguard_settings, pool),

	.check_func = loopguard_settings_check,
};

int loopguard_settings_read(struct event *event, pool_t pool,
			    struct loopguard_settings *set_r,
			    const char **error_r)
{
	const struct loopguard_settings *set;

	if (settings_get(event, &loopguard_setting_parser_info, 0,
			 &set, error_r) < 0)
		return -1;
	*set_r = *set;
	set_r->pool = pool;
	set_r->db_path = p_strdup(pool, set->db_path);
	set_r->on_error_name = NULL;
	settings_free(set);
	return 0;
}
