/* Finds and opens a user's loopguard store the way the Sieve plugin does. */

#include "lib.h"
#include "strnum.h"
#include "time-util.h"
#include "settings-parser.h"
#include "mail-user.h"
#include "doveadm-print.h"

#include "loopguard-settings.h"
#include "loopguard-db.h"
#include "loopguard-path.h"
#include "doveadm-loopguard.h"

#include <sys/stat.h>

#define DOVEADM_LOOPGUARD_SETTING_PREFIX "sieve_loopguard_"

static int
doveadm_loopguard_get_path(struct mail_user *user, const char **path_r,
			   const char **error_r)
{
	const char *path, *home = NULL;

	path = mail_user_plugin_getenv(user,
		DOVEADM_LOOPGUARD_SETTING_PREFIX"db");
	if (path == NULL || *path == '\0')
		path = LOOPGUARD_DEFAULT_DB_PATH;
	/* Only a relative path needs the home directory looked up. */
	if (*path != '/' && mail_user_get_home(user, &home) < 0) {
		*error_r = "Failed to look up the home directory";
		return -1;
	}
	return loopguard_path_resolve(path, home, path_r, error_r);
}

static void
doveadm_loopguard_get_settings(struct mail_user *user,
			       struct loopguard_db_settings *set_r)
{
	const char *str, *error;
	uoff_t size;
	unsigned int num;

	set_r->max_size = LOOPGUARD_DEFAULT_DB_MAX_SIZE;
	set_r->sync = TRUE;
	set_r->log_size = LOOPGUARD_DEFAULT_LOG_SIZE;

	/* Invalid values get the same treatment as in the Sieve plugin:
	   a warning and the default. */
	str = mail_user_plugin_getenv(user,
		DOVEADM_LOOPGUARD_SETTING_PREFIX"db_max_size");
	if (str != NULL && *str != '\0') {
		if (settings_get_size(str, &size, &error) < 0) {
			e_warning(user->event, DOVEADM_LOOPGUARD_SETTING_PREFIX
				  "db_max_size: %s, using the default", error);
		} else if (size < LOOPGUARD_MIN_DB_MAX_SIZE) {
			e_warning(user->event, DOVEADM_LOOPGUARD_SETTING_PREFIX
				  "db_max_size: %"PRIuUOFF_T" is below the "
				  "minimum of %u bytes, using the default",
				  size, LOOPGUARD_MIN_DB_MAX_SIZE);
		} else {
			set_r->max_size = size;
		}
	}

	str = mail_user_plugin_getenv(user,
		DOVEADM_LOOPGUARD_SETTING_PREFIX"sync");
	if (str != NULL && *str != '\0') {
		if (strcasecmp(str, "no") == 0)
			set_r->sync = FALSE;
		else if (strcasecmp(str, "yes") != 0) {
			e_warning(user->event, DOVEADM_LOOPGUARD_SETTING_PREFIX
				  "sync: invalid value '%s' (expected yes or "
				  "no), using yes", str);
		}
	}

	str = mail_user_plugin_getenv(user,
		DOVEADM_LOOPGUARD_SETTING_PREFIX"log_size");
	if (str != NULL && *str != '\0') {
		if (str_to_uint(str, &num) < 0) {
			e_warning(user->event, DOVEADM_LOOPGUARD_SETTING_PREFIX
				  "log_size: invalid number '%s', using the "
				  "default", str);
		} else {
			set_r->log_size = num;
		}
	}
}

int doveadm_loopguard_open(struct doveadm_mail_cmd_context *ctx,
			   struct mail_user *user, struct loopguard_db **db_r)
{
	struct loopguard_db_settings set;
	struct stat st;
	const char *error;

	*db_r = NULL;
	i_zero(&set);
	if (doveadm_loopguard_get_path(user, &set.path, &error) < 0) {
		e_error(user->event, "loopguard: %s", error);
		doveadm_mail_failed_error(ctx, MAIL_ERROR_TEMP);
		return -1;
	}
	/* Looking must not leave a store behind: loopguard_db_open() would
	   create one for every user that doveadm -A goes through. */
	if (stat(set.path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		e_error(user->event, "loopguard: stat(%s) failed: %m",
			set.path);
		doveadm_mail_failed_error(ctx, errno == EACCES ?
					  MAIL_ERROR_PERM : MAIL_ERROR_TEMP);
		return -1;
	}
	doveadm_loopguard_get_settings(user, &set);

	if (loopguard_db_open(&set, db_r, &error) < 0) {
		doveadm_loopguard_failed(ctx, user, error);
		return -1;
	}
	return 1;
}

void doveadm_loopguard_failed(struct doveadm_mail_cmd_context *ctx,
			      struct mail_user *user, const char *error)
{
	e_error(user->event, "loopguard: %s", error);
	doveadm_mail_failed_error(ctx, MAIL_ERROR_TEMP);
}

const char *doveadm_loopguard_time(time_t t)
{
	const char *str;
	size_t len;

	if (t <= 0)
		return "-";
	/* strftime's %z has no colon ("+0200"); ISO 8601's extended format,
	   which the date part uses, wants "+02:00". */
	str = t_strflocaltime("%Y-%m-%dT%H:%M:%S%z", t);
	len = strlen(str);
	i_assert(len > 2);
	return t_strdup_printf("%.*s:%s", (int)(len - 2), str,
			       str + len - 2);
}

void doveadm_loopguard_header_num(const char *key, const char *title)
{
	doveadm_print_header(key, title,
			     DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY |
			     DOVEADM_PRINT_HEADER_FLAG_NUMBER);
}
