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

/* The identity of a message for "counted once per key": SHA-256 over the
   Message-ID ("" when there is none) and the content fingerprint of
   looptest's duplicate check, cut to hash_size bytes. A sender chooses its
   Message-ID, so the ID alone would let any number of different messages
   pass as one. */
void ratelimit_key_message_hash(const char *message_id,
				const unsigned char *fingerprint,
				size_t fingerprint_size,
				unsigned char *hash_r, size_t hash_size);

/* The key with the thread identity appended. */
const char *ratelimit_key_with_thread(const char *key, const char *thread);

#endif
