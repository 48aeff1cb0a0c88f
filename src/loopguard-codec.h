#ifndef LOOPGUARD_CODEC_H
#define LOOPGUARD_CODEC_H

/* How the store's records and log entries look as bytes, apart from where
   the bytes are kept. A driver stores what these functions build; the
   formats are versioned, so that existing stores stay readable. No LMDB
   here: unit tests and other drivers use it as it is. */

#include "loopguard-store.h"

/* What a record holds: the first byte of its key. */
enum loopguard_codec_kind {
	/* a window: counted messages and a lock (loopguard-window.h) */
	LOOPGUARD_CODEC_KIND_WINDOW = 'r',
	/* a fingerprint: when a message was last seen */
	LOOPGUARD_CODEC_KIND_FINGERPRINT = 'd',
	/* Many small records, stored compactly (a 17-byte key, a value of
	   at most 9 bytes, no readable copy of the key): handle "", key of
	   exactly LOOPGUARD_CODEC_COMPACT_KEY_HEX_LEN lowercase hex digits, a
	   payload of at most LOOPGUARD_CODEC_COMPACT_PAYLOAD_MAX bytes, and
	   an expiry that fits into 32 bits. */
	LOOPGUARD_CODEC_KIND_COMPACT = 'f',
};
#define LOOPGUARD_CODEC_COMPACT_KEY_HEX_LEN 32
#define LOOPGUARD_CODEC_COMPACT_PAYLOAD_MAX 4

/* A key of the log: a big-endian sequence number. */
#define LOOPGUARD_CODEC_LOG_KEY_SIZE 8

struct loopguard_codec_record {
	enum loopguard_codec_kind kind;
	const char *handle;
	/* The readable key, even when the stored key is hashed. */
	const char *key;
	/* The record is gone (treated as absent, purged) at this time. */
	time_t expires;
	const unsigned char *payload;
	size_t payload_size;
};

/* Builds the stored key of kind/handle/key into dest: kind, handle, NUL,
   key; or, when that is longer than max_key_size, kind, '#' and the
   SHA-256 of it. The value keeps the readable key either way. For
   LOOPGUARD_CODEC_KIND_COMPACT: kind and the key's bytes. */
void loopguard_codec_key_build(enum loopguard_codec_kind kind,
			       const void *handle, size_t handle_size,
			       const void *key, size_t key_size,
			       size_t max_key_size, buffer_t *dest);

/* Builds a record's value into dest: version byte, expiry, handle, key,
   payload. */
void loopguard_codec_value_build(const char *handle, const char *key,
				 time_t expires, const buffer_t *payload,
				 buffer_t *dest);
/* The value of a LOOPGUARD_CODEC_KIND_COMPACT record: version byte,
   expiry in 32 bits (later ones are cut to the largest), payload. */
void loopguard_codec_value_build_compact(time_t expires,
					 const buffer_t *payload,
					 buffer_t *dest);

/* Parses a stored key and value (version 1 or 2, or 3 for a compact
   record, whose key is rendered as hex and handle is ""). The strings are
   allocated from the data stack; the payload points into value. Returns
   FALSE with the reason when the value is not one we can trust: another
   version, lengths that do not fit, or a value that does not belong to
   its key (which also keeps a hash collision from handing one key's
   record to another). */
bool loopguard_codec_record_parse(const void *key, size_t key_size,
				  const void *value, size_t value_size,
				  size_t max_key_size,
				  struct loopguard_codec_record *record_r,
				  const char **error_r);
/* Parses only what a record's expiry depends on (kind, expires, payload;
   handle and key are left NULL), checking the value's structure but not
   that it belongs to its key: at a cost that does not grow with the key,
   for telling a record that has expired. Never use it to trust a record's
   contents. */
bool loopguard_codec_record_parse_raw(const void *key, size_t key_size,
				      const void *value, size_t value_size,
				      struct loopguard_codec_record *record_r,
				      const char **error_r);

/* When a record really expires at now: the stored expiry was computed
   with the clock of the writer, and one written while the clock was ahead
   would otherwise live on long after its own rules allow. For a window
   the earlier of the stored expiry and what its payload allows, else the
   stored expiry. */
time_t loopguard_codec_record_expires(const struct loopguard_codec_record *record,
				      time_t now);

/* A fingerprint as a LOOPGUARD_CODEC_KIND_FINGERPRINT record, the form a
   driver without compact records uses: keyed by the whole fingerprint in
   hex (data stack), the time last seen in 8 bytes, big-endian. */
const char *
loopguard_codec_fingerprint_key(const unsigned char fingerprint[
					LOOPGUARD_STORE_FINGERPRINT_SIZE]);
void loopguard_codec_fingerprint_write(time_t last_seen, buffer_t *dest);
/* Returns FALSE for a payload of the wrong size. The time is unsigned: a
   time read from a file cannot overflow the arithmetic done with it. */
bool loopguard_codec_fingerprint_read(const unsigned char *payload,
				      size_t size, uint64_t *last_seen_r);

/* A fingerprint as a LOOPGUARD_CODEC_KIND_COMPACT record: keyed by its
   first 16 bytes in hex (data stack), the time last seen in 4 bytes,
   big-endian. 128 bits make an accidental match among even a million
   remembered messages a chance of about 1 in 10^26, and finding two
   messages that match on purpose costs 2^64 hashes and only ever makes
   the finder's own second message a duplicate. */
const char *
loopguard_codec_fingerprint_compact_key(const unsigned char fingerprint[
					LOOPGUARD_STORE_FINGERPRINT_SIZE]);
void loopguard_codec_fingerprint_write_compact(time_t last_seen,
					       buffer_t *dest);
bool loopguard_codec_fingerprint_read_compact(const unsigned char *payload,
					      size_t size,
					      uint64_t *last_seen_r);

void loopguard_codec_log_key_write(uint64_t seq, unsigned char
				   dest[LOOPGUARD_CODEC_LOG_KEY_SIZE]);
uint64_t loopguard_codec_log_key_read(const void *key);

/* A log entry: version byte, then tab-escaped fields. */
void loopguard_codec_log_entry_build(const struct loopguard_store_event *event,
				     string_t *dest);
/* Strings are allocated from the data stack. Returns FALSE for an entry
   of another version or with too few fields; newer versions may append
   fields. */
bool loopguard_codec_log_entry_parse(const void *data, size_t size,
				     struct loopguard_store_event *event_r);

#endif
