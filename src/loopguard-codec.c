/* The byte formats of the store's records and log entries. */

#include "lib.h"
#include "buffer.h"
#include "str.h"
#include "strescape.h"
#include "strnum.h"
#include "byteorder.h"
#include "hex-binary.h"
#include "sha2.h"

#include "loopguard-window.h"
#include "loopguard-codec.h"

/* Version 2 widened the handle length from 2 to 4 bytes; version 1 values
   are still read, and rewritten as version 2 by the next update. */
#define LOOPGUARD_CODEC_RECORD_VERSION 2
#define LOOPGUARD_CODEC_RECORD_VERSION_V1 1
/* LOOPGUARD_CODEC_KIND_COMPACT: version, expires (32 bits), payload */
#define LOOPGUARD_CODEC_RECORD_VERSION_COMPACT 3
#define LOOPGUARD_CODEC_COMPACT_HEADER_SIZE (1 + 4)
#define LOOPGUARD_CODEC_COMPACT_KEY_SIZE \
	(1 + LOOPGUARD_CODEC_COMPACT_KEY_HEX_LEN / 2)
#define LOOPGUARD_CODEC_LOG_VERSION 1
/* version byte, expires, handle length */
#define LOOPGUARD_CODEC_RECORD_HEADER_SIZE (1 + 8 + 4)
#define LOOPGUARD_CODEC_RECORD_HEADER_SIZE_V1 (1 + 8 + 2)
#define LOOPGUARD_CODEC_LOG_FIELD_COUNT 9
/* Stored instead of handle+key when kind+handle+key is longer than the
   key limit: kind byte, this mark, SHA-256 of the whole readable key. */
#define LOOPGUARD_CODEC_HASHED_KEY_MARK '#'

static bool
loopguard_codec_compact_key_valid(const char *key, size_t key_size)
{
	size_t i;

	if (key_size != LOOPGUARD_CODEC_COMPACT_KEY_HEX_LEN)
		return FALSE;
	for (i = 0; i < key_size; i++) {
		if (!((key[i] >= '0' && key[i] <= '9') ||
		      (key[i] >= 'a' && key[i] <= 'f')))
			return FALSE;
	}
	return TRUE;
}

void loopguard_codec_key_build(enum loopguard_codec_kind kind,
			       const void *handle, size_t handle_size,
			       const void *key, size_t key_size,
			       size_t max_key_size, buffer_t *dest)
{
	unsigned char digest[SHA256_RESULTLEN];

	buffer_set_used_size(dest, 0);
	buffer_append_c(dest, kind);
	if (kind == LOOPGUARD_CODEC_KIND_COMPACT) {
		/* the caller's mistake, and one that would let the two forms
		   of keys meet under one kind letter */
		i_assert(handle_size == 0 &&
			 loopguard_codec_compact_key_valid(key, key_size));
		if (hex_to_binary(t_strndup(key, key_size), dest) < 0)
			i_unreached();
		return;
	}
	buffer_append(dest, handle, handle_size);
	buffer_append_c(dest, '\0');
	buffer_append(dest, key, key_size);
	if (dest->used <= max_key_size)
		return;

	sha256_get_digest(dest->data, dest->used, digest);
	buffer_set_used_size(dest, 0);
	buffer_append_c(dest, kind);
	buffer_append_c(dest, LOOPGUARD_CODEC_HASHED_KEY_MARK);
	buffer_append(dest, digest, sizeof(digest));
}

void loopguard_codec_value_build(const char *handle, const char *key,
				 time_t expires, const buffer_t *payload,
				 buffer_t *dest)
{
	size_t handle_len = strlen(handle), key_len = strlen(key);
	unsigned char *p;

	i_assert(handle_len <= (uint32_t)-1);
	i_assert(key_len <= (uint32_t)-1);

	buffer_set_used_size(dest, 0);
	p = buffer_append_space_unsafe(dest,
				       LOOPGUARD_CODEC_RECORD_HEADER_SIZE);
	p[0] = LOOPGUARD_CODEC_RECORD_VERSION;
	cpu64_to_be_unaligned((uint64_t)(int64_t)expires, p + 1);
	cpu32_to_be_unaligned((uint32_t)handle_len, p + 9);
	buffer_append(dest, handle, handle_len);
	p = buffer_append_space_unsafe(dest, 4);
	cpu32_to_be_unaligned((uint32_t)key_len, p);
	buffer_append(dest, key, key_len);
	buffer_append_buf(dest, payload, 0, SIZE_MAX);
}

/* Its key is all there is to know of a compact record, so no readable
   copy of it is kept. */
void loopguard_codec_value_build_compact(time_t expires,
					 const buffer_t *payload,
					 buffer_t *dest)
{
	unsigned char *p;

	i_assert(payload->used <= LOOPGUARD_CODEC_COMPACT_PAYLOAD_MAX);
	buffer_set_used_size(dest, 0);
	p = buffer_append_space_unsafe(dest,
				       LOOPGUARD_CODEC_COMPACT_HEADER_SIZE);
	p[0] = LOOPGUARD_CODEC_RECORD_VERSION_COMPACT;
	cpu32_to_be_unaligned(expires > (time_t)UINT32_MAX ? UINT32_MAX :
			      (uint32_t)expires, p + 1);
	buffer_append_buf(dest, payload, 0, SIZE_MAX);
}

/* Where a value's handle and key are, before they are checked against
   the stored key. */
struct loopguard_codec_record_raw {
	const unsigned char *handle, *key;
	size_t handle_len, key_len;
	/* LOOPGUARD_CODEC_KIND_COMPACT: the stored key is the key */
	bool compact;
};

static bool
loopguard_codec_record_parse_compact(const unsigned char *k, size_t key_size,
				     const unsigned char *p, size_t size,
				     struct loopguard_codec_record *record_r,
				     struct loopguard_codec_record_raw *raw_r,
				     const char **error_r)
{
	if (key_size != LOOPGUARD_CODEC_COMPACT_KEY_SIZE ||
	    k[0] != LOOPGUARD_CODEC_KIND_COMPACT) {
		*error_r = "compact value under another key";
		return FALSE;
	}
	if (size < LOOPGUARD_CODEC_COMPACT_HEADER_SIZE ||
	    size > LOOPGUARD_CODEC_COMPACT_HEADER_SIZE +
	    LOOPGUARD_CODEC_COMPACT_PAYLOAD_MAX) {
		*error_r = t_strdup_printf("compact value of %zu bytes", size);
		return FALSE;
	}
	record_r->kind = LOOPGUARD_CODEC_KIND_COMPACT;
	record_r->expires = (time_t)be32_to_cpu_unaligned(p + 1);
	record_r->payload = p + LOOPGUARD_CODEC_COMPACT_HEADER_SIZE;
	record_r->payload_size = size - LOOPGUARD_CODEC_COMPACT_HEADER_SIZE;
	raw_r->compact = TRUE;
	return TRUE;
}

static bool
loopguard_codec_record_parse_parts(const void *stored_key, size_t key_size,
				   const void *value, size_t size,
				   struct loopguard_codec_record *record_r,
				   struct loopguard_codec_record_raw *raw_r,
				   const char **error_r)
{
	const unsigned char *p = value, *k = stored_key;
	const unsigned char *handle, *key;
	size_t pos, handle_len, key_len;

	i_zero(record_r);
	i_zero(raw_r);
	if (size >= 1 && p[0] == LOOPGUARD_CODEC_RECORD_VERSION_COMPACT) {
		return loopguard_codec_record_parse_compact(k, key_size, p, size,
							    record_r, raw_r,
							    error_r);
	}
	if (size < 1 || (p[0] != LOOPGUARD_CODEC_RECORD_VERSION &&
			 p[0] != LOOPGUARD_CODEC_RECORD_VERSION_V1)) {
		*error_r = size < 1 ? "empty value" :
			t_strdup_printf("unknown version %u", p[0]);
		return FALSE;
	}
	pos = p[0] == LOOPGUARD_CODEC_RECORD_VERSION_V1 ?
		LOOPGUARD_CODEC_RECORD_HEADER_SIZE_V1 :
		LOOPGUARD_CODEC_RECORD_HEADER_SIZE;
	if (size < pos) {
		*error_r = t_strdup_printf("value too short (%zu bytes)",
					   size);
		return FALSE;
	}
	handle_len = p[0] == LOOPGUARD_CODEC_RECORD_VERSION_V1 ?
		be16_to_cpu_unaligned(p + 9) : be32_to_cpu_unaligned(p + 9);
	if (size - pos < 4 || size - pos - 4 < handle_len) {
		*error_r = "handle length exceeds the value";
		return FALSE;
	}
	handle = p + pos;
	pos += handle_len;
	key_len = be32_to_cpu_unaligned(p + pos);
	pos += 4;
	if (size - pos < key_len) {
		*error_r = "key length exceeds the value";
		return FALSE;
	}
	key = p + pos;
	pos += key_len;
	if (key_size < 2) {
		*error_r = "stored key too short";
		return FALSE;
	}
	record_r->kind = k[0];
	record_r->expires = (time_t)(int64_t)be64_to_cpu_unaligned(p + 1);
	record_r->payload = p + pos;
	record_r->payload_size = size - pos;
	raw_r->handle = handle;
	raw_r->handle_len = handle_len;
	raw_r->key = key;
	raw_r->key_len = key_len;
	return TRUE;
}

bool loopguard_codec_record_parse_raw(const void *stored_key, size_t key_size,
				      const void *value, size_t size,
				      struct loopguard_codec_record *record_r,
				      const char **error_r)
{
	struct loopguard_codec_record_raw raw;

	return loopguard_codec_record_parse_parts(stored_key, key_size,
						  value, size, record_r,
						  &raw, error_r);
}

bool loopguard_codec_record_parse(const void *stored_key, size_t key_size,
				  const void *value, size_t size,
				  size_t max_key_size,
				  struct loopguard_codec_record *record_r,
				  const char **error_r)
{
	struct loopguard_codec_record_raw raw;
	buffer_t *expected;

	if (!loopguard_codec_record_parse_parts(stored_key, key_size,
						value, size, record_r,
						&raw, error_r))
		return FALSE;
	if (raw.compact) {
		record_r->handle = "";
		record_r->key = binary_to_hex((const unsigned char *)
					      stored_key + 1, key_size - 1);
		return TRUE;
	}
	if (memchr(raw.handle, '\0', raw.handle_len) != NULL ||
	    memchr(raw.key, '\0', raw.key_len) != NULL) {
		*error_r = "NUL in handle or key";
		return FALSE;
	}

	/* The value must be the one its key was made from. */
	expected = t_buffer_create(key_size + 32);
	loopguard_codec_key_build(record_r->kind, raw.handle, raw.handle_len,
				  raw.key, raw.key_len, max_key_size,
				  expected);
	if (expected->used != key_size ||
	    memcmp(expected->data, stored_key, key_size) != 0) {
		*error_r = "value does not belong to its key";
		return FALSE;
	}

	record_r->handle = t_strndup(raw.handle, raw.handle_len);
	record_r->key = t_strndup(raw.key, raw.key_len);
	return TRUE;
}

time_t loopguard_codec_record_expires(const struct loopguard_codec_record *record,
				      time_t now)
{
	if (record->kind != LOOPGUARD_CODEC_KIND_WINDOW)
		return record->expires;
	return I_MIN(record->expires,
		     loopguard_window_expires(record->payload,
					      record->payload_size, now));
}

/*
 * Fingerprints
 */

const char *
loopguard_codec_fingerprint_key(const unsigned char fingerprint[
					LOOPGUARD_STORE_FINGERPRINT_SIZE])
{
	return binary_to_hex(fingerprint, LOOPGUARD_STORE_FINGERPRINT_SIZE);
}

void loopguard_codec_fingerprint_write(time_t last_seen, buffer_t *dest)
{
	cpu64_to_be_unaligned((uint64_t)last_seen,
		buffer_append_space_unsafe(dest, sizeof(uint64_t)));
}

bool loopguard_codec_fingerprint_read(const unsigned char *payload,
				      size_t size, uint64_t *last_seen_r)
{
	if (size != sizeof(uint64_t))
		return FALSE;
	*last_seen_r = be64_to_cpu_unaligned(payload);
	return TRUE;
}

const char *
loopguard_codec_fingerprint_compact_key(const unsigned char fingerprint[
					LOOPGUARD_STORE_FINGERPRINT_SIZE])
{
	return binary_to_hex(fingerprint,
			     LOOPGUARD_CODEC_COMPACT_KEY_HEX_LEN / 2);
}

void loopguard_codec_fingerprint_write_compact(time_t last_seen,
					       buffer_t *dest)
{
	/* good until 2106 */
	cpu32_to_be_unaligned((uint32_t)last_seen,
		buffer_append_space_unsafe(dest, sizeof(uint32_t)));
}

bool loopguard_codec_fingerprint_read_compact(const unsigned char *payload,
					      size_t size,
					      uint64_t *last_seen_r)
{
	if (size != sizeof(uint32_t))
		return FALSE;
	*last_seen_r = be32_to_cpu_unaligned(payload);
	return TRUE;
}

/*
 * Log
 */

void loopguard_codec_log_key_write(uint64_t seq, unsigned char
				   dest[LOOPGUARD_CODEC_LOG_KEY_SIZE])
{
	cpu64_to_be_unaligned(seq, dest);
}

uint64_t loopguard_codec_log_key_read(const void *key)
{
	return be64_to_cpu_unaligned(key);
}

static void loopguard_codec_log_field(string_t *dest, const char *value)
{
	str_append_c(dest, '\t');
	str_append_tabescaped(dest, value == NULL ? "" : value);
}

void loopguard_codec_log_entry_build(const struct loopguard_store_event *event,
				     string_t *dest)
{
	str_append_c(dest, LOOPGUARD_CODEC_LOG_VERSION);
	str_printfa(dest, "%"PRId64, (int64_t)event->time);
	loopguard_codec_log_field(dest, event->test);
	loopguard_codec_log_field(dest, event->handle);
	loopguard_codec_log_field(dest, event->key);
	loopguard_codec_log_field(dest, event->reasons);
	loopguard_codec_log_field(dest, event->message_id);
	str_printfa(dest, "\t%u\t%u\t%"PRId64, event->count, event->window,
		    (int64_t)event->locked_until);
}

bool loopguard_codec_log_entry_parse(const void *data, size_t size,
				     struct loopguard_store_event *event_r)
{
	const unsigned char *p = data;
	const char *const *args;
	int64_t time, locked_until;

	i_zero(event_r);
	if (size < 1 || p[0] != LOOPGUARD_CODEC_LOG_VERSION)
		return FALSE;
	args = t_strsplit_tabescaped(t_strndup(p + 1, size - 1));
	if (str_array_length(args) < LOOPGUARD_CODEC_LOG_FIELD_COUNT)
		return FALSE;
	if (str_to_int64(args[0], &time) < 0 ||
	    str_to_uint(args[6], &event_r->count) < 0 ||
	    str_to_uint(args[7], &event_r->window) < 0 ||
	    str_to_int64(args[8], &locked_until) < 0)
		return FALSE;
	event_r->time = (time_t)time;
	event_r->test = args[1];
	event_r->handle = args[2];
	event_r->key = args[3];
	event_r->reasons = args[4];
	event_r->message_id = args[5];
	event_r->locked_until = (time_t)locked_until;
	return TRUE;
}
