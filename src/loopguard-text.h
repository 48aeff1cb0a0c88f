#ifndef LOOPGUARD_TEXT_H
#define LOOPGUARD_TEXT_H

/* Text from messages and scripts made safe to store and to show: keys,
   handles and Message-IDs end up in the Dovecot log, in the user's capped
   log and on an administrator's terminal through doveadm. */

/* Stored and shown values are at most this many bytes. */
#define LOOPGUARD_TEXT_MAX 200

/* str, with every control character (C0, DEL, C1: newlines, tabs, ESC
   included) and invalid UTF-8 replaced by '?', cut to at most max_bytes
   bytes ending in "..." when longer. Returns str itself when nothing had
   to change, else a string from the data stack. */
const char *loopguard_text_sanitize(const char *str, size_t max_bytes);

/* The name a key or handle is stored and shown under: str itself when it
   is safe and at most LOOPGUARD_TEXT_MAX bytes; otherwise its sanitized
   beginning followed by " #" and 16 hex digits of its SHA-256, so that
   different long or unsafe names still count apart. */
const char *loopguard_text_stored_name(const char *str);

#endif
