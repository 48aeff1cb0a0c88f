/* Key and thread identity of a message for ratelimit. */

#include "lib.h"
#include <ctype.h>
#include "str.h"
#include "message-id.h"
#include "sha2.h"

#include "ratelimit-key.h"

/* Reply and forward markers of various languages and clients, without the
   colon. "Auto" is what Exchange puts before automatic replies. */
static const char *const ratelimit_subject_prefixes[] = {
	"re", "fwd", "fw", "aw", "wg", "sv", "vs", "antw", "tr", "rif",
	"auto", "odp", "res", "enc",
};

const char *ratelimit_key_default(const char *sender, const char *from)
{
	if (sender != NULL && *sender != '\0')
		return t_str_lcase(sender);
	if (from != NULL && *from != '\0')
		return t_str_lcase(from);
	return NULL;
}

static const char *ratelimit_key_first_message_id(const char *header)
{
	const char *msgid;

	if (header == NULL)
		return NULL;
	msgid = message_id_get_next(&header);
	return msgid == NULL || *msgid == '\0' ? NULL : msgid;
}

/* Returns the length of a reply prefix at the start of str ("Re:",
   "Re[2]:", "AW :"), or 0 when there is none. */
static size_t ratelimit_subject_prefix_length(const char *str)
{
	const char *p = str;
	size_t word_len;
	unsigned int i;

	while (i_isalpha(*p))
		p++;
	word_len = p - str;
	if (word_len == 0)
		return 0;
	for (i = 0; i < N_ELEMENTS(ratelimit_subject_prefixes); i++) {
		if (strlen(ratelimit_subject_prefixes[i]) == word_len &&
		    strncasecmp(str, ratelimit_subject_prefixes[i],
				word_len) == 0)
			break;
	}
	if (i == N_ELEMENTS(ratelimit_subject_prefixes))
		return 0;

	/* optional reply counter: Re[2]: or Re(2): */
	if (*p == '[' || *p == '(') {
		char close = (*p == '[' ? ']' : ')');

		p++;
		while (i_isdigit(*p))
			p++;
		if (*p != close)
			return 0;
		p++;
	}
	while (*p == ' ')
		p++;
	if (*p != ':')
		return 0;
	return p + 1 - str;
}

const char *ratelimit_key_normalize_subject(const char *subject)
{
	string_t *str;
	const char *p = subject;
	size_t len;
	bool space = FALSE;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if ((len = ratelimit_subject_prefix_length(p)) == 0)
			break;
		p += len;
	}

	str = t_str_new(strlen(p) + 1);
	for (; *p != '\0'; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			space = TRUE;
			continue;
		}
		if (space && str_len(str) > 0)
			str_append_c(str, ' ');
		space = FALSE;
		str_append_c(str, i_tolower(*p));
	}
	return str_c(str);
}

const char *ratelimit_key_thread(const char *references,
				 const char *in_reply_to,
				 const char *message_id,
				 const char *subject)
{
	const char *thread;

	if ((thread = ratelimit_key_first_message_id(references)) != NULL ||
	    (thread = ratelimit_key_first_message_id(in_reply_to)) != NULL ||
	    (thread = ratelimit_key_first_message_id(message_id)) != NULL)
		return t_strconcat("<", thread, ">", NULL);
	if (subject == NULL)
		return NULL;
	thread = ratelimit_key_normalize_subject(subject);
	return *thread == '\0' ? NULL : thread;
}

const char *ratelimit_key_with_thread(const char *key, const char *thread)
{
	return t_strconcat(key, " thread:", thread, NULL);
}

void ratelimit_key_message_hash(const char *message_id,
				const unsigned char *fingerprint,
				size_t fingerprint_size,
				unsigned char *hash_r, size_t hash_size)
{
	unsigned char digest[SHA256_RESULTLEN];
	struct sha256_ctx ctx;

	i_assert(hash_size <= sizeof(digest));
	sha256_init(&ctx);
	/* the Message-ID cannot contain NUL: it separates the parts */
	sha256_loop(&ctx, message_id, strlen(message_id) + 1);
	sha256_loop(&ctx, fingerprint, fingerprint_size);
	sha256_result(&ctx, digest);
	memcpy(hash_r, digest, hash_size);
}
