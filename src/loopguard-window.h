#ifndef LOOPGUARD_WINDOW_H
#define LOOPGUARD_WINDOW_H

/* Exact sliding-window counting and locks, on the stored payload of one
   key. Pure arithmetic: no store, no interpreter. A driver that keeps
   windows server-side (Redis) implements the same rules there. */

#define LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE 8
/* How far ahead of now a stored time may lie and still be believed: clocks
   are set back by a few seconds to minutes (NTP stepping a drifted clock,
   deliveries on servers a little apart). A stamp further ahead was written
   by a clock that was wrong, and is stale. */
#define LOOPGUARD_WINDOW_CLOCK_TOLERANCE (5 * 60)

struct loopguard_window_params {
	/* at most this many messages per window; 0 disables the test */
	unsigned int count;
	/* window length in seconds */
	unsigned int period;
	/* seconds a key stays blocked after exceeding the limit */
	unsigned int lock;
};

struct loopguard_window_result {
	/* the test is true: over the limit, or locked */
	bool exceeded;
	/* messages of this key within the window, this one included */
	unsigned int count_in_window;
	/* 0 when not locked */
	time_t locked_until;
	/* this message was counted already: the earlier answer is repeated,
	   except that while the key is locked it is true */
	bool already_counted;
	/* the stored payload was unreadable (another version, a wrong size,
	   times that cannot be) and was treated as absent */
	bool payload_ignored;
};

/* What doveadm loopguard list shows of a key. */
struct loopguard_window_state {
	unsigned int count;
	unsigned int period;
	unsigned int lock;
	unsigned int count_in_window;
	time_t locked_until;
	time_t last_seen;
};

/* Evaluates one message against the stored payload (NULL when the key has
   none) and, when update is TRUE, writes the new payload and its expiry.
   Returns TRUE when new_payload and expires_r were set.

   Times are judged against now, so that no record outlives its rules:
   stamps more than LOOPGUARD_WINDOW_CLOCK_TOLERANCE ahead of now are stale (not
   counted, dropped), stamps less far ahead count as now; a lock ending
   more than the record's own lock plus the tolerance after now is stale,
   and any lock ends at most params->lock after now. A now before 1970
   (time() failed) counts nothing: the result is false, nothing is
   written. */
bool loopguard_window_apply(const unsigned char *old, size_t old_size,
			    const struct loopguard_window_params *params, time_t now,
			    const unsigned char message_hash[
				    LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE],
			    bool update, buffer_t *new_payload,
			    time_t *expires_r,
			    struct loopguard_window_result *result_r);

/* For the store: when a window record really expires at now, by the rules
   of loopguard_window_apply() and the window and lock stored in its
   payload. An unreadable payload has expired (0). */
time_t loopguard_window_expires(const unsigned char *payload, size_t size,
				time_t now);

/* Decodes a stored payload, judging its times as loopguard_window_apply()
   does. Returns FALSE for a payload of the wrong
   version or size, or with times beyond any window or lock from now. */
bool loopguard_window_decode(const unsigned char *payload, size_t size,
			     time_t now, struct loopguard_window_state *state_r);

#endif
