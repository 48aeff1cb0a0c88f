/* Resolution of the sieve_loopguard_db setting to a store location. */

#include "lib.h"

#include "loopguard-compat.h"
#include "loopguard-path.h"

bool loopguard_path_needs_home(const char *configured)
{
	return *configured != '/' &&
		!str_begins_with(configured, LOOPGUARD_PATH_URI_PREFIX);
}

int loopguard_path_resolve(const char *configured, const char *home,
			   const char **path_r, const char **error_r)
{
	const char *path = configured;

	if (!loopguard_path_needs_home(path)) {
		*path_r = path;
		return 0;
	}
	if (home == NULL || *home == '\0') {
		*error_r = t_strdup_printf(
			"sieve_loopguard_db=%s is relative to the home "
			"directory, but the user has none", configured);
		return -1;
	}
	if (str_begins_with(path, "~/"))
		path += 2;
	else if (strcmp(path, "~") == 0 || *path == '\0') {
		*error_r = "sieve_loopguard_db must name a file, "
			"not the home directory";
		return -1;
	}
	*path_r = t_strconcat(home, "/", path, NULL);
	return 0;
}
