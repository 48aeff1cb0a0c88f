/* Finds and opens a user's loopguard store the way the Sieve plugin does. */

#include "lib.h"
#include "time-util.h"
#include "mail-user.h"
#include "doveadm-print.h"

#include "loopguard-settings.h"
#include "loopguard-store.h"
#include "loopguard-path.h"
#include "loopguard-text.h"
#include "doveadm-loopguard.h"

static int
doveadm_loopguard_get_path(struct mail_user *user, const char *configured,
			   const char **path_r, const char **error_r)
{
	const char *home = NULL;

	/* Only a relative path needs the home directory looked up. */
	if (loopguard_path_needs_home(configured) &&
	    mail_user_get_home(user, &home) < 0) {
		*error_r = "Failed to look up the home directory";
		return -1;
	}
	return loopguard_path_resolve(configured, home, path_r, error_r);
}

int doveadm_loopguard_open(struct doveadm_mail_cmd_context *ctx,
			   struct mail_user *user,
			   struct loopguard_store **store_r)
{
	struct loopguard_settings lg_set;
	struct loopguard_store_settings set;
	const char *error;
	int ret, exists_errno;

	*store_r = NULL;
	if (doveadm_loopguard_settings_read(user, &lg_set, &error) < 0) {
		e_error(user->event, "loopguard: %s", error);
		doveadm_mail_failed_error(ctx, MAIL_ERROR_TEMP);
		return -1;
	}
	i_zero(&set);
	set.username = user->username;
	set.max_size = lg_set.db_max_size;
	set.sync = lg_set.sync;
	set.allow_network_fs = lg_set.db_allow_network_fs;
	set.log_size = lg_set.log_size;
	set.event = user->event;
	if (doveadm_loopguard_get_path(user, lg_set.db_path, &set.location,
				       &error) < 0) {
		e_error(user->event, "loopguard: %s", error);
		doveadm_mail_failed_error(ctx, MAIL_ERROR_TEMP);
		return -1;
	}
	/* Looking must not leave a store behind: opening would create one
	   for every user that doveadm -A goes through. Denied access is no
	   temporary failure. */
	errno = 0;
	if ((ret = loopguard_store_exists(&set, &error)) <= 0) {
		if (ret == 0)
			return 0;
		exists_errno = errno;
		e_error(user->event, "loopguard: %s", error);
		doveadm_mail_failed_error(ctx, exists_errno == EACCES ?
					  MAIL_ERROR_PERM : MAIL_ERROR_TEMP);
		return -1;
	}
	if (loopguard_store_open(&set, store_r, &error) < 0) {
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

const char *doveadm_loopguard_text(const char *str)
{
	return loopguard_text_sanitize(str, LOOPGUARD_TEXT_MAX);
}
