/* Unit tests of ratelimit's window arithmetic and key derivation. */

#include "lib.h"
#include "buffer.h"
#include "byteorder.h"
#include "test-common.h"

#include "loopguard-window.h"
#include "ratelimit-key.h"

/* The stored payload of one key, carried from call to call as the store
   would. */
struct window {
	buffer_t *payload;
	time_t expires;
};

static void window_init(struct window *w)
{
	w->payload = buffer_create_dynamic(default_pool, 256);
	w->expires = 0;
}

static void window_deinit(struct window *w)
{
	buffer_free(&w->payload);
}

static void message_hash(unsigned int n, unsigned char hash_r[])
{
	memset(hash_r, 0, LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE);
	memcpy(hash_r, &n, sizeof(n));
}

/* Evaluates message n at time now; stores the new payload like the store
   does (an expired payload is not handed back). */
static struct loopguard_window_result
window_eval(struct window *w, const struct loopguard_window_params *params,
	    time_t now, unsigned int n, bool update)
{
	unsigned char hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];
	struct loopguard_window_result result;
	buffer_t *new_payload = t_buffer_create(256);
	bool live = w->payload->used > 0 && w->expires > now;
	time_t expires;

	message_hash(n, hash);
	if (loopguard_window_apply(live ? w->payload->data : NULL,
				   live ? w->payload->used : 0, params, now,
				   hash, update, new_payload, &expires,
				   &result)) {
		buffer_set_used_size(w->payload, 0);
		buffer_append_buf(w->payload, new_payload, 0, SIZE_MAX);
		w->expires = expires;
	}
	return result;
}

static void test_window_exact(void)
{
	struct loopguard_window_params params = { .count = 3, .period = 100 };
	struct window w;
	unsigned int i;

	test_begin("window: N pass, N+1th within the window is true");
	window_init(&w);
	for (i = 0; i < 3; i++)
		test_assert_idx(!window_eval(&w, &params, 1000 + i, i,
					     TRUE).exceeded, i);
	test_assert(window_eval(&w, &params, 1050, 3, TRUE).exceeded);
	/* message 0 (t=1000) leaves the window at t=1100, but 1, 2 and the
	   over-limit message 3 are still in: strict counting */
	test_assert(window_eval(&w, &params, 1100, 4, TRUE).exceeded);
	/* at 1151 only message 4 (t=1100) is left in the window */
	test_assert(!window_eval(&w, &params, 1151, 5, TRUE).exceeded);
	window_deinit(&w);
	test_end();
}

static void test_window_sliding_not_bucket(void)
{
	struct loopguard_window_params params = { .count = 2, .period = 60 };
	struct window w;

	test_begin("window: sliding, not a fixed bucket");
	window_init(&w);
	test_assert(!window_eval(&w, &params, 50, 1, TRUE).exceeded);
	test_assert(!window_eval(&w, &params, 59, 2, TRUE).exceeded);
	/* a fixed minute bucket would reset at 60; the window does not */
	test_assert(window_eval(&w, &params, 61, 3, TRUE).exceeded);
	/* at 110 the first (50) has left, 59, 61 and this one remain */
	test_assert(window_eval(&w, &params, 110, 4, TRUE).exceeded);
	/* at 125 only the stamps of 110 and 125 are within 60 seconds */
	test_assert(!window_eval(&w, &params, 125, 5, TRUE).exceeded);
	window_deinit(&w);
	test_end();
}

static void test_window_count_zero(void)
{
	struct loopguard_window_params params = { .count = 0, .period = 60 };
	struct window w;
	unsigned int i;

	test_begin("window: count 0 is off and records nothing");
	window_init(&w);
	for (i = 0; i < 5; i++)
		test_assert(!window_eval(&w, &params, 10, i, TRUE).exceeded);
	test_assert(w.payload->used == 0);
	window_deinit(&w);
	test_end();
}

static void test_window_lock(void)
{
	struct loopguard_window_params params = { .count = 1, .period = 10,
					   .lock = 100 };
	struct loopguard_window_result result;
	struct window w;

	test_begin("window: lock holds after the rate drops");
	window_init(&w);
	test_assert(!window_eval(&w, &params, 1000, 1, TRUE).exceeded);
	result = window_eval(&w, &params, 1001, 2, TRUE);
	test_assert(result.exceeded);
	test_assert(result.locked_until == 1101);
	/* the rate is fine again, but the key is locked */
	result = window_eval(&w, &params, 1050, 3, TRUE);
	test_assert(result.exceeded);
	test_assert(result.locked_until == 1101);
	/* released afterwards */
	test_assert(!window_eval(&w, &params, 1102, 4, TRUE).exceeded);
	window_deinit(&w);
	test_end();
}

static void test_window_noupdate(void)
{
	struct loopguard_window_params params = { .count = 2, .period = 100 };
	struct window w;
	size_t used;

	test_begin("window: noupdate records nothing");
	window_init(&w);
	test_assert(!window_eval(&w, &params, 10, 1, TRUE).exceeded);
	used = w.payload->used;
	test_assert(!window_eval(&w, &params, 11, 2, FALSE).exceeded);
	test_assert(!window_eval(&w, &params, 11, 3, FALSE).exceeded);
	test_assert(w.payload->used == used);
	test_assert(!window_eval(&w, &params, 12, 4, TRUE).exceeded);
	/* a third message would exceed */
	test_assert(window_eval(&w, &params, 13, 5, FALSE).exceeded);
	test_assert(!window_eval(&w, &params, 13, 5, FALSE).already_counted);
	window_deinit(&w);
	test_end();
}

static void test_window_once_per_message(void)
{
	struct loopguard_window_params params = { .count = 1, .period = 100 };
	struct loopguard_window_result result;
	struct window w;

	test_begin("window: a message is counted once");
	window_init(&w);
	test_assert(!window_eval(&w, &params, 10, 7, TRUE).exceeded);
	result = window_eval(&w, &params, 11, 7, TRUE);
	test_assert(!result.exceeded);
	test_assert(result.already_counted);
	test_assert(result.count_in_window == 1);
	test_assert(window_eval(&w, &params, 12, 8, TRUE).exceeded);
	/* the over-limit answer is repeated too */
	result = window_eval(&w, &params, 13, 8, TRUE);
	test_assert(result.exceeded && result.already_counted);
	/* and the first message keeps its answer */
	test_assert(!window_eval(&w, &params, 14, 7, TRUE).exceeded);
	window_deinit(&w);
	test_end();
}

static void test_window_counted_while_locked(void)
{
	struct loopguard_window_params params = { .count = 2, .period = 100,
					   .lock = 900 };
	struct loopguard_window_result result;
	struct window w;

	test_begin("window: while locked, a message counted before is over");
	window_init(&w);
	test_assert(!window_eval(&w, &params, 10, 1, TRUE).exceeded);
	test_assert(!window_eval(&w, &params, 11, 2, TRUE).exceeded);
	test_assert(window_eval(&w, &params, 12, 3, TRUE).exceeded);
	/* message 1 passed before the lock; again now, it is over */
	result = window_eval(&w, &params, 13, 1, TRUE);
	test_assert(result.already_counted && result.exceeded);
	test_assert(result.locked_until == 912);
	/* also with :noupdate */
	test_assert(window_eval(&w, &params, 14, 2, FALSE).exceeded);
	window_deinit(&w);
	test_end();
}

static void test_window_bounded(void)
{
	struct loopguard_window_params params = { .count = 5, .period = 1000 };
	struct loopguard_window_state state;
	struct window w;
	unsigned int i;

	test_begin("window: at most count+1 stamps are stored");
	window_init(&w);
	for (i = 0; i < 500; i++) {
		test_assert_idx(window_eval(&w, &params, 100 + i, i,
				TRUE).count_in_window <= params.count + 1, i);
	}
	test_assert(loopguard_window_decode(w.payload->data, w.payload->used,
					    600, &state));
	test_assert(state.count_in_window == params.count + 1);
	test_assert(state.last_seen == 599);
	test_assert(state.count == 5 && state.period == 1000);
	/* the payload expires with the window */
	test_assert(w.expires == 599 + 1000);
	window_deinit(&w);
	test_end();
}

static void test_window_decode_invalid(void)
{
	static const unsigned char garbage[] = { 9, 1, 2, 3 };
	struct loopguard_window_state state;
	struct loopguard_window_params params = { .count = 1, .period = 10 };
	unsigned char hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];
	struct loopguard_window_result result;
	buffer_t *payload = t_buffer_create(64);
	time_t expires;

	test_begin("window: a payload of the wrong version is not trusted");
	test_assert(!loopguard_window_decode(garbage, sizeof(garbage), 0,
					     &state));
	test_assert(!loopguard_window_decode(NULL, 0, 0, &state));
	message_hash(1, hash);
	test_assert(loopguard_window_apply(garbage, sizeof(garbage), &params,
					   5, hash, TRUE, payload, &expires,
					   &result));
	test_assert(!result.exceeded && result.count_in_window == 1);
	/* the caller is told, so that it can log it */
	test_assert(result.payload_ignored);
	/* but not for a key that had no payload, or a good one */
	test_assert(!loopguard_window_apply(NULL, 0, &params, 5, hash, FALSE,
					    NULL, &expires, &result));
	test_assert(!result.payload_ignored);
	(void)loopguard_window_apply(payload->data, payload->used, &params, 6,
				     hash, FALSE, NULL, &expires, &result);
	test_assert(!result.payload_ignored && result.already_counted);
	test_end();
}

static void append_be32(buffer_t *buf, uint32_t value)
{
	cpu32_to_be_unaligned(value, buffer_append_space_unsafe(buf, 4));
}

static void append_be64(buffer_t *buf, uint64_t value)
{
	cpu64_to_be_unaligned(value, buffer_append_space_unsafe(buf, 8));
}

/* A version 1 payload with count 1, period 10, no lock, the given
   locked_until and one stamp at stamp_time (another message's). */
static void
payload_build(buffer_t *buf, uint64_t locked_until, uint64_t stamp_time)
{
	buffer_append_c(buf, 1);
	append_be32(buf, 1);
	append_be32(buf, 10);
	append_be32(buf, 0);
	append_be64(buf, locked_until);
	append_be64(buf, stamp_time);
	append_be64(buf, 0xeeeeeeeeeeeeeeeeULL);
	buffer_append_c(buf, 0);
}

static void test_window_absurd_times(void)
{
	static const uint64_t absurd[] = {
		(uint64_t)INT64_MAX, (uint64_t)INT64_MAX - 5, UINT64_MAX,
		(uint64_t)INT64_MAX + 1, 1000 + (uint64_t)UINT_MAX + 1,
	};
	struct loopguard_window_params params = { .count = 1, .period = 10 };
	unsigned char hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];
	struct loopguard_window_result result;
	struct loopguard_window_state state;
	buffer_t *payload = t_buffer_create(64);
	buffer_t *new_payload = t_buffer_create(64);
	time_t expires;
	unsigned int i;

	test_begin("window: times from the file beyond any lock are not "
		   "trusted");
	message_hash(1, hash);
	for (i = 0; i < N_ELEMENTS(absurd); i++) {
		/* a lock for ever, or a stamp that would overflow */
		buffer_set_used_size(payload, 0);
		payload_build(payload, absurd[i], 995);
		test_assert_idx(loopguard_window_apply(payload->data,
				payload->used, &params, 1000, hash, TRUE,
				new_payload, &expires, &result), i);
		test_assert_idx(result.payload_ignored && !result.exceeded &&
				result.locked_until == 0 &&
				result.count_in_window == 1, i);
		test_assert_idx(expires == 1010, i);
		test_assert_idx(!loopguard_window_decode(payload->data,
				payload->used, 1000, &state), i);

		buffer_set_used_size(payload, 0);
		payload_build(payload, 0, absurd[i]);
		test_assert_idx(loopguard_window_apply(payload->data,
				payload->used, &params, 1000, hash, TRUE,
				new_payload, &expires, &result), i);
		test_assert_idx(result.payload_ignored && !result.exceeded &&
				result.count_in_window == 1, i);
		test_assert_idx(!loopguard_window_decode(payload->data,
				payload->used, 1000, &state), i);
	}
	/* the longest lock that can be stored is readable, but a lock
	   longer than the record's own :lock (0 here) is stale */
	buffer_set_used_size(payload, 0);
	payload_build(payload, 1000 + (uint64_t)UINT_MAX, 995);
	(void)loopguard_window_apply(payload->data, payload->used, &params,
				     1000, hash, FALSE, NULL, &expires,
				     &result);
	test_assert(!result.payload_ignored && result.exceeded &&
		    result.locked_until == 0);
	test_end();
}

/* What the store makes of the record: its effective expiry at now. */
static time_t window_record_expires(const struct window *w, time_t now)
{
	return I_MIN(w->expires,
		     loopguard_window_expires(w->payload->data,
					      w->payload->used, now));
}

#define TEN_YEARS ((time_t)10 * 365 * 24 * 60 * 60)

static void test_window_clock_jump(void)
{
	struct loopguard_window_params params = { .count = 3, .period = 60,
					   .lock = 900 };
	const time_t now = 1700000000, ahead = now + TEN_YEARS;
	struct loopguard_window_result result;
	struct loopguard_window_state state;
	struct window w;
	unsigned int i;

	test_begin("window: a clock that was years ahead leaves nothing");
	window_init(&w);
	for (i = 0; i < 4; i++)
		result = window_eval(&w, &params, ahead + i, i, TRUE);
	test_assert(result.exceeded && result.locked_until == ahead + 903);
	test_assert(w.expires == ahead + 903);
	/* the clock is corrected: the lock and the stamps are stale */
	test_assert(window_record_expires(&w, now) <= now);
	test_assert(loopguard_window_decode(w.payload->data, w.payload->used,
					    now, &state));
	test_assert(state.locked_until == 0 && state.count_in_window == 0);
	/* even when the store hands the record over: counted afresh */
	w.expires = ahead + 903;
	result = window_eval(&w, &params, now, 10, TRUE);
	test_assert(!result.exceeded && result.locked_until == 0 &&
		    result.count_in_window == 1 && !result.payload_ignored);
	/* and what is written lives by the rules from now on */
	test_assert(w.expires == now + 60);
	test_assert(window_record_expires(&w, now + 61) <= now + 61);
	window_deinit(&w);
	test_end();
}

static void test_window_clock_small_jump(void)
{
	struct loopguard_window_params params = { .count = 1, .period = 60,
					   .lock = 900 };
	const time_t now = 1700000000;
	struct loopguard_window_result result;
	struct window w;

	test_begin("window: a clock a little ahead is believed, clamped");
	window_init(&w);
	/* written by a clock 200 s ahead: within the tolerance */
	(void)window_eval(&w, &params, now + 200, 1, TRUE);
	result = window_eval(&w, &params, now + 201, 2, TRUE);
	test_assert(result.exceeded && result.locked_until == now + 1101);
	/* back at the right time: still locked, but at most :lock from
	   now, and the stamps of the future count as now */
	w.expires = now + 1101;
	result = window_eval(&w, &params, now, 3, TRUE);
	test_assert(result.exceeded && result.locked_until == now + 900);
	test_assert(result.count_in_window == 2);
	test_assert(w.expires == now + 900);
	/* a shorter :lock in the script shortens the lock */
	params.lock = 60;
	result = window_eval(&w, &params, now + 1, 4, FALSE);
	test_assert(result.exceeded && result.locked_until == now + 61);
	window_deinit(&w);

	/* a lock longer than the record's own :lock + tolerance is stale */
	params.lock = 900;
	window_init(&w);
	(void)window_eval(&w, &params, now + 400, 1, TRUE);
	(void)window_eval(&w, &params, now + 401, 2, TRUE);
	result = window_eval(&w, &params, now, 3, FALSE);
	test_assert(!result.exceeded && result.locked_until == 0);
	test_assert(window_record_expires(&w, now) <= now);
	window_deinit(&w);
	test_end();
}

static void test_window_clock_invalid(void)
{
	struct loopguard_window_params params = { .count = 1, .period = 60 };
	unsigned char hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];
	struct loopguard_window_result result;
	buffer_t *payload = t_buffer_create(64);
	time_t expires;

	test_begin("window: a clock before 1970 or failed counts nothing");
	message_hash(1, hash);
	test_assert(!loopguard_window_apply(NULL, 0, &params, -1, hash, TRUE,
					    payload, &expires, &result));
	test_assert(!result.exceeded && payload->used == 0);
	test_assert(!loopguard_window_apply(NULL, 0, &params, -86400, hash,
					    TRUE, payload, &expires,
					    &result));
	test_assert(!result.exceeded);
	test_end();
}

static void test_window_count_max(void)
{
	struct loopguard_window_params params = { .count = UINT_MAX, .period = 100 };
	struct loopguard_window_result result;
	struct window w;

	test_begin("window: the largest count does not overflow");
	window_init(&w);
	result = window_eval(&w, &params, 10, 1, TRUE);
	test_assert(!result.exceeded && result.count_in_window == 1);
	result = window_eval(&w, &params, 11, 2, TRUE);
	test_assert(!result.exceeded && result.count_in_window == 2);
	window_deinit(&w);
	test_end();
}

static void test_key_default(void)
{
	test_begin("key: default is the sender, else From, lower-cased");
	test_assert_strcmp(ratelimit_key_default("Bob@Example.COM",
						 "x@y.z"),
			   "bob@example.com");
	test_assert_strcmp(ratelimit_key_default("", "Alice@Example.com"),
			   "alice@example.com");
	test_assert_strcmp(ratelimit_key_default(NULL, "a@b.c"), "a@b.c");
	test_assert(ratelimit_key_default("", NULL) == NULL);
	test_assert(ratelimit_key_default(NULL, "") == NULL);
	test_end();
}

static void test_key_thread(void)
{
	test_begin("key: thread identity");
	test_assert_strcmp(ratelimit_key_thread(
		"<root@x> <mid@x>", "<parent@x>", "<own@x>", "Re: Hi"),
		"<root@x>");
	test_assert_strcmp(ratelimit_key_thread(
		NULL, "<parent@x>", "<own@x>", "Re: Hi"), "<parent@x>");
	test_assert_strcmp(ratelimit_key_thread(
		"", "garbage", "<own@x>", "Re: Hi"), "<own@x>");
	test_assert_strcmp(ratelimit_key_thread(
		NULL, NULL, NULL, "Re: AW: Fwd:  Printer   broken"),
		"printer broken");
	test_assert(ratelimit_key_thread(NULL, NULL, NULL, NULL) == NULL);
	test_assert(ratelimit_key_thread(NULL, NULL, NULL, "Re:  ") == NULL);
	test_end();
}

static void test_key_message_hash(void)
{
	unsigned char fp1[32], fp2[32];
	unsigned char h1[8], h2[8], h3[8];

	test_begin("key: a message is the same only with the same content");
	memset(fp1, 1, sizeof(fp1));
	memset(fp2, 2, sizeof(fp2));
	ratelimit_key_message_hash("<a@x>", fp1, sizeof(fp1), h1, sizeof(h1));
	ratelimit_key_message_hash("<a@x>", fp1, sizeof(fp1), h2, sizeof(h2));
	test_assert(memcmp(h1, h2, sizeof(h1)) == 0);
	/* one Message-ID, other content: another message */
	ratelimit_key_message_hash("<a@x>", fp2, sizeof(fp2), h2, sizeof(h2));
	test_assert(memcmp(h1, h2, sizeof(h1)) != 0);
	/* the same content under another Message-ID, or none */
	ratelimit_key_message_hash("<b@x>", fp1, sizeof(fp1), h3, sizeof(h3));
	test_assert(memcmp(h1, h3, sizeof(h1)) != 0);
	ratelimit_key_message_hash("", fp1, sizeof(fp1), h3, sizeof(h3));
	test_assert(memcmp(h1, h3, sizeof(h1)) != 0);
	test_end();
}

static void test_key_subject(void)
{
	test_begin("key: subject prefixes");
	test_assert_strcmp(ratelimit_key_normalize_subject("Re[2]: SV: x"),
			   "x");
	test_assert_strcmp(ratelimit_key_normalize_subject(
		"Auto: Out of office"), "out of office");
	test_assert_strcmp(ratelimit_key_normalize_subject("RE : WG: y"),
			   "y");
	/* a word that merely starts like a prefix stays */
	test_assert_strcmp(ratelimit_key_normalize_subject("Report: z"),
			   "report: z");
	test_assert_strcmp(ratelimit_key_normalize_subject("Re-done"),
			   "re-done");
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_window_exact,
		test_window_sliding_not_bucket,
		test_window_count_zero,
		test_window_lock,
		test_window_noupdate,
		test_window_once_per_message,
		test_window_counted_while_locked,
		test_window_bounded,
		test_window_decode_invalid,
		test_window_absurd_times,
		test_window_count_max,
		test_window_clock_jump,
		test_window_clock_small_jump,
		test_window_clock_invalid,
		test_key_default,
		test_key_thread,
		test_key_subject,
		test_key_message_hash,
		NULL
	};
	return test_run(test_functions);
}
