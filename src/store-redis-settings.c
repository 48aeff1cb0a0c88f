/* Parsing the Redis store's location (sieve_loopguard_db = redis:...). */

#include "lib.h"
#include "str.h"
#include "strnum.h"
#include "safe-memset.h"
#include "str-sanitize.h"

#include <fcntl.h>
#include <unistd.h>

#include "loopguard-compat.h"
#include "store-redis-settings.h"

#define LOOPGUARD_REDIS_SCHEME "redis:"
/* A password file holds one line; anything much longer is not one. */
#define LOOPGUARD_REDIS_PASSWORD_FILE_MAX 1024

bool loopguard_redis_location_claims(const char *location)
{
	return str_begins_with(location, LOOPGUARD_REDIS_SCHEME);
}

static int
redis_password_file_read(pool_t pool, const char *path,
			 const char **password_r, const char **error_r)
{
	char buf[LOOPGUARD_REDIS_PASSWORD_FILE_MAX + 1];
	ssize_t ret;
	size_t len;
	int fd;

	if ((fd = open(path, O_RDONLY)) == -1) {
		*error_r = t_strdup_printf("password_file=%s: open() failed: "
					   "%m", path);
		return -1;
	}
	ret = read(fd, buf, sizeof(buf));
	i_close_fd(&fd);
	if (ret < 0) {
		*error_r = t_strdup_printf("password_file=%s: read() failed: "
					   "%m", path);
		return -1;
	}
	len = (size_t)ret;
	if (len > LOOPGUARD_REDIS_PASSWORD_FILE_MAX) {
		*error_r = t_strdup_printf("password_file=%s: longer than "
					   "%u bytes", path,
					   LOOPGUARD_REDIS_PASSWORD_FILE_MAX);
		return -1;
	}
	/* the line's end is not part of the password */
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (len == 0 || memchr(buf, '\n', len) != NULL) {
		*error_r = t_strdup_printf("password_file=%s: must hold one "
					   "non-empty line", path);
		return -1;
	}
	*password_r = p_strndup(pool, buf, len);
	safe_memset(buf, 0, sizeof(buf));
	return 0;
}

static int
redis_setting_uint(const char *name, const char *value, unsigned int max,
		   unsigned int *num_r, const char **error_r)
{
	if (str_to_uint(value, num_r) < 0 || *num_r > max) {
		*error_r = t_strdup_printf("%s=%s: not a number up to %u",
					   name, value, max);
		return -1;
	}
	return 0;
}

static int
redis_setting_parse(pool_t pool, const char *arg,
		    struct loopguard_redis_settings *set,
		    const char **password_file_r, const char **error_r)
{
	const char *value = strchr(arg, '=');
	const char *name;
	unsigned int num;

	if (value == NULL) {
		/* may be a password given without its name: not shown */
		*error_r = "a parameter without '=' (expected key=value)";
		return -1;
	}
	name = t_strdup_until(arg, value++);
	if (strcmp(name, "host") == 0 && *value != '\0')
		set->host = p_strdup(pool, value);
	else if (strcmp(name, "port") == 0) {
		if (redis_setting_uint(name, value, 65535, &num, error_r) < 0)
			return -1;
		if (num == 0) {
			*error_r = "port=0: not a port";
			return -1;
		}
		set->port = (in_port_t)num;
	} else if ((strcmp(name, "path") == 0 ||
		    strcmp(name, "socket") == 0) && *value != '\0')
		set->path = p_strdup(pool, value);
	else if (strcmp(name, "db") == 0)
		return redis_setting_uint(name, value, INT_MAX, &set->db,
					  error_r);
	else if (strcmp(name, "prefix") == 0)
		set->prefix = p_strdup(pool, value);
	else if (strcmp(name, "timeout_msecs") == 0) {
		if (redis_setting_uint(name, value, 3600 * 1000,
				       &set->timeout_msecs, error_r) < 0)
			return -1;
		if (set->timeout_msecs == 0) {
			*error_r = "timeout_msecs=0: a timeout is required";
			return -1;
		}
	} else if (strcmp(name, "password") == 0 && *value != '\0')
		set->password = p_strdup(pool, value);
	else if (strcmp(name, "password_file") == 0 && *value != '\0')
		*password_file_r = value;
	else if (*value == '\0') {
		*error_r = t_strdup_printf("%s=: empty value",
					   str_sanitize(name, 64));
		return -1;
	} else {
		*error_r = t_strdup_printf("unknown parameter '%s'",
					   str_sanitize(name, 64));
		return -1;
	}
	return 0;
}

int loopguard_redis_settings_parse(pool_t pool, const char *location,
				   struct loopguard_redis_settings *set_r,
				   const char **error_r)
{
	const char *const *args, *password_file = NULL, *error;

	i_zero(set_r);
	set_r->port = LOOPGUARD_REDIS_DEFAULT_PORT;
	set_r->prefix = LOOPGUARD_REDIS_DEFAULT_PREFIX;
	set_r->timeout_msecs = LOOPGUARD_REDIS_DEFAULT_TIMEOUT_MSECS;

	if (!loopguard_redis_location_claims(location)) {
		*error_r = "sieve_loopguard_db: not a redis: location";
		return -1;
	}
	args = t_strsplit(location + strlen(LOOPGUARD_REDIS_SCHEME), ":");
	for (; *args != NULL; args++) {
		if (**args == '\0')
			continue;
		if (redis_setting_parse(pool, *args, set_r, &password_file,
					&error) < 0) {
			*error_r = t_strdup_printf("sieve_loopguard_db: redis: "
						   "%s", error);
			return -1;
		}
	}
	if (set_r->path != NULL && set_r->host != NULL) {
		*error_r = "sieve_loopguard_db: redis: host and socket "
			"exclude each other";
		return -1;
	}
	if (set_r->path == NULL && set_r->host == NULL)
		set_r->host = "127.0.0.1";
	if (password_file != NULL) {
		if (set_r->password != NULL) {
			*error_r = "sieve_loopguard_db: redis: password and "
				"password_file exclude each other";
			return -1;
		}
		if (redis_password_file_read(pool, password_file,
					     &set_r->password, &error) < 0) {
			*error_r = t_strdup_printf("sieve_loopguard_db: redis: "
						   "%s", error);
			return -1;
		}
	}
	return 0;
}

const char *
loopguard_redis_settings_address(const struct loopguard_redis_settings *set)
{
	if (set->path != NULL)
		return set->path;
	return t_strdup_printf("%s:%u", set->host, set->port);
}
