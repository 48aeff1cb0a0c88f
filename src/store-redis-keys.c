/* Key names of the Redis store. */

#include "lib.h"
#include "str.h"
#include "strnum.h"
#include "hex-binary.h"
#include "sha2.h"

#include "store-redis-keys.h"

#define LOOPGUARD_REDIS_USER_HASH_BYTES 16

static bool redis_user_safe(const char *username)
{
	const unsigned char *p;

	if (*username == '\0')
		return FALSE;
	for (p = (const unsigned char *)username; *p != '\0'; p++) {
		if (*p <= ' ' || *p >= 0x7f || strchr("{}*?[]\\#", *p) != NULL)
			return FALSE;
	}
	return TRUE;
}

const char *loopguard_redis_key_user(pool_t pool, const char *prefix,
				     const char *username)
{
	unsigned char digest[SHA256_RESULTLEN];
	const char *user = username;

	if (!redis_user_safe(username)) {
		sha256_get_digest(username, strlen(username), digest);
		user = t_strconcat("#", binary_to_hex(digest,
			LOOPGUARD_REDIS_USER_HASH_BYTES), NULL);
	}
	return p_strdup_printf(pool, "%s%s{%s}:", prefix,
			       *prefix == '\0' ? "" : ":", user);
}

const char *loopguard_redis_key_window(const char *user_prefix,
				       const char *handle, const char *key)
{
	return t_strdup_printf("%sw:%zu:%s:%s", user_prefix, strlen(handle),
			       handle, key);
}

bool loopguard_redis_key_window_parse(const char *user_prefix,
				      const char *rkey, size_t size,
				      const char **handle_r,
				      const char **key_r)
{
	size_t prefix_len = strlen(user_prefix), handle_len;
	const char *p, *end;
	uintmax_t num;
	size_t rest;

	if (size < prefix_len + 2 ||
	    memcmp(rkey, user_prefix, prefix_len) != 0 ||
	    memcmp(rkey + prefix_len, "w:", 2) != 0)
		return FALSE;
	/* a NUL-terminated copy: str_parse_uintmax() needs one */
	p = t_strndup(rkey + prefix_len + 2, size - prefix_len - 2);
	end = p + (size - prefix_len - 2);
	if (str_parse_uintmax(p, &num, &p) < 0 || *p != ':')
		return FALSE;
	p++;
	rest = (size_t)(end - p);
	/* room for the handle and the ':' after it */
	if (num >= rest || p[num] != ':')
		return FALSE;
	handle_len = (size_t)num;
	*handle_r = t_strndup(p, handle_len);
	*key_r = t_strndup(p + handle_len + 1, rest - handle_len - 1);
	return TRUE;
}

const char *loopguard_redis_key_fingerprint(const char *user_prefix,
					    const unsigned char *fingerprint,
					    size_t size)
{
	return t_strconcat(user_prefix, "f:",
			   binary_to_hex(fingerprint, size), NULL);
}

const char *loopguard_redis_key_log(const char *user_prefix)
{
	return t_strconcat(user_prefix, "log", NULL);
}

static void redis_glob_escape(string_t *dest, const char *str)
{
	for (; *str != '\0'; str++) {
		if (strchr("*?[]\\", *str) != NULL)
			str_append_c(dest, '\\');
		str_append_c(dest, *str);
	}
}

const char *loopguard_redis_key_pattern(const char *user_prefix,
					bool windows_only,
					const char *handle)
{
	string_t *str = t_str_new(128);

	redis_glob_escape(str, user_prefix);
	if (windows_only) {
		str_append(str, "w:");
		if (handle != NULL) {
			str_printfa(str, "%zu:", strlen(handle));
			redis_glob_escape(str, handle);
			str_append_c(str, ':');
		}
	}
	str_append_c(str, '*');
	return str_c(str);
}
