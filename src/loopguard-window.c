/* Sliding-window arithmetic of ratelimit on one key's stored payload. */

#include "lib.h"
#include "buffer.h"
#include "byteorder.h"

#include "loopguard-window.h"

/* Payload, all integers big-endian:
     version (1), count (4), period (4), lock (4), locked_until (8),
     then one stamp per counted message, oldest first:
     time (8), message hash (8), answer given (1).
   At most count+1 stamps are kept: the most recent count+1 are all that is
   needed to tell whether the next message exceeds count. */
#define LOOPGUARD_WINDOW_PAYLOAD_VERSION 1
#define LOOPGUARD_WINDOW_HEADER_SIZE (1 + 4 + 4 + 4 + 8)
#define LOOPGUARD_WINDOW_STAMP_SIZE (8 + LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE + 1)
/* No stored time lies further ahead than the longest lock (a clock that
   went back by more than that is not worth a lock for ever). */
#define LOOPGUARD_WINDOW_MAX_FUTURE ((uint64_t)UINT_MAX)

struct window_stamp {
	time_t time;
	unsigned char hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];
	bool exceeded;
};

struct window_payload {
	unsigned int count, period, lock;
	time_t locked_until;
	const unsigned char *stamps;
	unsigned int stamp_count;
};

static void window_write_be64(buffer_t *buf, uint64_t value)
{
	cpu64_to_be_unaligned(value, buffer_append_space_unsafe(buf, 8));
}

static void window_write_be32(buffer_t *buf, uint32_t value)
{
	cpu32_to_be_unaligned(value, buffer_append_space_unsafe(buf, 4));
}

/* Times come from a file: checked as unsigned before they become time_t,
   so that no arithmetic on them can overflow. */
static bool window_time_valid(uint64_t t, time_t now)
{
	return now >= 0 && t <= (uint64_t)now + LOOPGUARD_WINDOW_MAX_FUTURE;
}

static bool
window_payload_parse(const unsigned char *data, size_t size, time_t now,
			struct window_payload *payload_r)
{
	uint64_t locked_until;
	size_t pos;

	i_zero(payload_r);
	if (data == NULL || size < LOOPGUARD_WINDOW_HEADER_SIZE ||
	    data[0] != LOOPGUARD_WINDOW_PAYLOAD_VERSION ||
	    (size - LOOPGUARD_WINDOW_HEADER_SIZE) % LOOPGUARD_WINDOW_STAMP_SIZE != 0)
		return FALSE;
	locked_until = be64_to_cpu_unaligned(data + 13);
	if (!window_time_valid(locked_until, now))
		return FALSE;
	for (pos = LOOPGUARD_WINDOW_HEADER_SIZE; pos < size;
	     pos += LOOPGUARD_WINDOW_STAMP_SIZE) {
		if (!window_time_valid(be64_to_cpu_unaligned(data + pos),
					  now))
			return FALSE;
	}
	payload_r->count = be32_to_cpu_unaligned(data + 1);
	payload_r->period = be32_to_cpu_unaligned(data + 5);
	payload_r->lock = be32_to_cpu_unaligned(data + 9);
	payload_r->locked_until = (time_t)locked_until;
	payload_r->stamps = data + LOOPGUARD_WINDOW_HEADER_SIZE;
	payload_r->stamp_count =
		(size - LOOPGUARD_WINDOW_HEADER_SIZE) / LOOPGUARD_WINDOW_STAMP_SIZE;
	return TRUE;
}

static void
window_payload_stamp(const struct window_payload *payload,
			unsigned int idx, struct window_stamp *stamp_r)
{
	const unsigned char *p = payload->stamps + idx * LOOPGUARD_WINDOW_STAMP_SIZE;

	i_assert(idx < payload->stamp_count);
	stamp_r->time = (time_t)be64_to_cpu_unaligned(p);
	memcpy(stamp_r->hash, p + 8, LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE);
	stamp_r->exceeded = p[8 + LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE] != 0;
}

/* A stamp written by a clock that was ahead: not believed. */
static bool window_stamp_stale(time_t stamp, time_t now)
{
	return stamp > now + LOOPGUARD_WINDOW_CLOCK_TOLERANCE;
}

/* A stamp counts while now - period < time <= now. One slightly ahead
   (the clock went back a little) counts as now, so that no stamp stays in
   the window longer than the window. */
static bool window_in_window(time_t stamp, time_t now, unsigned int period)
{
	if (window_stamp_stale(stamp, now))
		return FALSE;
	/* now - period, not stamp + period: now is the clock's, sane */
	return I_MIN(stamp, now) > now - (time_t)period;
}

/* The lock as it stands at now: 0 when over or stale (further ahead than
   the record's own lock allows, i.e. set by a clock that was ahead), and
   never more than max_lock after now. */
static time_t
window_lock_at(const struct window_payload *payload, time_t now,
		  unsigned int max_lock)
{
	if (payload->locked_until <= now ||
	    payload->locked_until - now >
	    (time_t)payload->lock + LOOPGUARD_WINDOW_CLOCK_TOLERANCE)
		return 0;
	return I_MIN(payload->locked_until, now + (time_t)max_lock);
}

static void
window_payload_write(buffer_t *buf, const struct loopguard_window_params *params,
			time_t locked_until)
{
	buffer_append_c(buf, LOOPGUARD_WINDOW_PAYLOAD_VERSION);
	window_write_be32(buf, params->count);
	window_write_be32(buf, params->period);
	window_write_be32(buf, params->lock);
	window_write_be64(buf, (uint64_t)locked_until);
}

static void
window_stamp_write(buffer_t *buf, const struct window_stamp *stamp)
{
	window_write_be64(buf, (uint64_t)stamp->time);
	buffer_append(buf, stamp->hash, LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE);
	buffer_append_c(buf, stamp->exceeded ? 1 : 0);
}

bool loopguard_window_apply(const unsigned char *old, size_t old_size,
			    const struct loopguard_window_params *params, time_t now,
			    const unsigned char message_hash[
				    LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE],
			    bool update, buffer_t *new_payload,
			    time_t *expires_r,
			    struct loopguard_window_result *result_r)
{
	struct window_payload payload;
	struct window_stamp stamp;
	unsigned int i, first_kept, in_window = 0;
	time_t locked_until = 0;

	i_zero(result_r);
	if (params->count == 0 || params->period == 0 || now < 0)
		return FALSE;

	if (!window_payload_parse(old, old_size, now, &payload)) {
		i_zero(&payload);
		result_r->payload_ignored = old != NULL;
	}
	locked_until = window_lock_at(&payload, now, params->lock);

	for (i = 0; i < payload.stamp_count; i++) {
		window_payload_stamp(&payload, i, &stamp);
		if (!window_in_window(stamp.time, now, params->period))
			continue;
		in_window++;
		if (memcmp(stamp.hash, message_hash,
			   LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE) == 0) {
			/* Counted before: a retried delivery, or a second
			   ratelimit on this key. */
			result_r->already_counted = TRUE;
			/* while locked, every message is over the limit,
			   also one that passed before the lock */
			result_r->exceeded = stamp.exceeded ||
				locked_until > now;
		}
	}
	result_r->locked_until = locked_until;
	if (result_r->already_counted) {
		result_r->count_in_window = in_window;
		return FALSE;
	}

	/* Only count+1 stamps are kept, so beyond that the count means no
	   more than "over the limit": report it as count+1, as list does.
	   (in_window >= count: count+1 cannot overflow then.) */
	result_r->count_in_window = in_window >= params->count ?
		params->count + 1 : in_window + 1;
	result_r->exceeded = (locked_until > now ||
			      in_window + 1 > params->count);
	if (in_window + 1 > params->count && params->lock > 0) {
		locked_until = I_MAX(locked_until, now + (time_t)params->lock);
		result_r->locked_until = locked_until;
	}
	if (!update)
		return FALSE;

	/* Keep the newest count stamps within the window plus this one. */
	window_payload_write(new_payload, params, locked_until);
	first_kept = in_window > params->count ? in_window - params->count : 0;
	in_window = 0;
	for (i = 0; i < payload.stamp_count; i++) {
		window_payload_stamp(&payload, i, &stamp);
		if (!window_in_window(stamp.time, now, params->period))
			continue;
		if (in_window++ >= first_kept) {
			stamp.time = I_MIN(stamp.time, now);
			window_stamp_write(new_payload, &stamp);
		}
	}
	stamp.time = now;
	memcpy(stamp.hash, message_hash, LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE);
	stamp.exceeded = result_r->exceeded;
	window_stamp_write(new_payload, &stamp);

	*expires_r = I_MAX(now + (time_t)params->period, locked_until);
	return TRUE;
}

time_t loopguard_window_expires(const unsigned char *data, size_t size,
				time_t now)
{
	struct window_payload payload;
	struct window_stamp stamp;
	time_t expires;
	unsigned int i;

	if (now < 0 || !window_payload_parse(data, size, now, &payload))
		return 0;
	expires = window_lock_at(&payload, now, payload.lock);
	for (i = 0; i < payload.stamp_count; i++) {
		window_payload_stamp(&payload, i, &stamp);
		if (window_in_window(stamp.time, now, payload.period)) {
			expires = I_MAX(expires, I_MIN(stamp.time, now) +
					(time_t)payload.period);
		}
	}
	return expires;
}

bool loopguard_window_decode(const unsigned char *data, size_t size,
			     time_t now, struct loopguard_window_state *state_r)
{
	struct window_payload payload;
	struct window_stamp stamp;
	unsigned int i;

	i_zero(state_r);
	if (!window_payload_parse(data, size, now, &payload))
		return FALSE;
	state_r->count = payload.count;
	state_r->period = payload.period;
	state_r->lock = payload.lock;
	state_r->locked_until = window_lock_at(&payload, now, payload.lock);
	for (i = 0; i < payload.stamp_count; i++) {
		window_payload_stamp(&payload, i, &stamp);
		if (window_stamp_stale(stamp.time, now))
			continue;
		if (window_in_window(stamp.time, now, payload.period))
			state_r->count_in_window++;
		state_r->last_seen = I_MAX(state_r->last_seen,
					   I_MIN(stamp.time, now));
	}
	return TRUE;
}
