#ifndef RATELIMIT_KEY_H
#define RATELIMIT_KEY_H

/* Which key a message is counted under. Pure string work on header values
   already read; results are allocated from the data stack. */

/* The default key: the envelope sender, else the From address, lower-cased.
   sender is NULL when unknown and "" for the null sender. Returns NULL when
   there is neither. */
const char *ratelimit_key_default(const char *sender, const char *from);

/* The thread identity: the first message-id of References, else of
   In-Reply-To, else the message's own Message-ID, else the Subject without
   reply and forward prefixes. Any argument may be NULL. Returns NULL when
   nothing identifies the thread. */
const char *ratelimit_key_thread(const char *references,
				 const char *in_reply_to,
				 const char *message_id,
				 const char *subject);

/* The Subject without "Re:", "Fwd:", "AW:", "SV:", "Auto:"... prefixes,
   with white space folded and lower-cased. */
const char *ratelimit_key_normalize_subject(const char *subject);

/* The key with the thread identity appended. */
const char *ratelimit_key_with_thread(const char *key, const char *thread);

#endif
