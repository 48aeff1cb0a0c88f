/* Sanitizing and capping text before it is stored or shown. */

#include "lib.h"
#include "str.h"
#include "str-sanitize.h"
#include "hex-binary.h"
#include "sha2.h"

#include "loopguard-text.h"

/* " #" and 16 hex digits */
#define LOOPGUARD_TEXT_HASH_HEX 16
#define LOOPGUARD_TEXT_HASH_SUFFIX_LEN (2 + LOOPGUARD_TEXT_HASH_HEX)

/* str_sanitize() leaves DEL and the C1 controls (U+0080..U+009F, CSI among
   them, which terminals act on) in place. */
static bool loopguard_text_c1_at(const unsigned char *p)
{
	return p[0] == 0x7f ||
		(p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f);
}

const char *loopguard_text_sanitize(const char *str, size_t max_bytes)
{
	const unsigned char *p;
	const char *sanitized;
	string_t *dest;

	sanitized = str_sanitize(str, max_bytes);
	for (p = (const unsigned char *)sanitized; *p != '\0'; p++) {
		if (loopguard_text_c1_at(p))
			break;
	}
	if (*p == '\0')
		return sanitized;

	dest = t_str_new(strlen(sanitized));
	for (p = (const unsigned char *)sanitized; *p != '\0'; p++) {
		if (!loopguard_text_c1_at(p))
			str_append_c(dest, *p);
		else {
			str_append_c(dest, '?');
			if (*p != 0x7f)
				p++;
		}
	}
	return str_c(dest);
}

const char *loopguard_text_stored_name(const char *str)
{
	unsigned char digest[SHA256_RESULTLEN];
	const char *prefix;

	if (loopguard_text_sanitize(str, LOOPGUARD_TEXT_MAX) == str)
		return str;
	sha256_get_digest(str, strlen(str), digest);
	prefix = loopguard_text_sanitize(str, LOOPGUARD_TEXT_MAX -
					 LOOPGUARD_TEXT_HASH_SUFFIX_LEN);
	return t_strdup_printf("%s #%s", prefix,
		binary_to_hex(digest, LOOPGUARD_TEXT_HASH_HEX / 2));
}
