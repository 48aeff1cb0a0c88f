/* The sliding window as a Redis Lua script, with loopguard-window.c's
   rules and payload. */

#include "lib.h"

#include "store-redis-script.h"
#include "store-redis-window.h"

/* KEYS[1]: the window. ARGV: count, period, lock, now, the message hash
   (8 bytes), record (1 or 0), the clock tolerance. Returns exceeded,
   count in window, locked until, already counted, payload ignored.

   Redis's Lua has only doubles: times are exact up to 2^53, and a stored
   time beyond now + 2^32 (which makes the payload invalid) still compares
   as larger, so every decision is the one loopguard-window.c makes. */
static struct loopguard_redis_script redis_window_script = {
	.text =
"local count = tonumber(ARGV[1])\n"
"local period = tonumber(ARGV[2])\n"
"local lock = tonumber(ARGV[3])\n"
"local now = tonumber(ARGV[4])\n"
"local hash = ARGV[5]\n"
"local record = ARGV[6] == '1'\n"
"local tolerance = tonumber(ARGV[7])\n"
"local max_future = 4294967295\n"
"local function get_be(s, pos, n)\n"
"  local v = 0\n"
"  for i = pos, pos + n - 1 do v = v * 256 + string.byte(s, i) end\n"
"  return v\n"
"end\n"
"local function put_be(v, n)\n"
"  local b = {}\n"
"  for i = n, 1, -1 do\n"
"    b[i] = string.char(v % 256)\n"
"    v = math.floor(v / 256)\n"
"  end\n"
"  return table.concat(b)\n"
"end\n"
"local function flag(b) if b then return string.char(1) end\n"
"  return string.char(0) end\n"
/* the payload: version, count, period, lock, locked_until, then stamps
   of time, message hash and answer */
"local p_lock, p_locked_until, stamps, ignored = 0, 0, {}, 0\n"
"local old = redis.call('GET', KEYS[1])\n"
"if old then\n"
"  local size = string.len(old)\n"
"  local valid = size >= 21 and string.byte(old, 1) == 1 and\n"
"    (size - 21) % 17 == 0\n"
"  if valid then\n"
"    p_locked_until = get_be(old, 14, 8)\n"
"    valid = p_locked_until <= now + max_future\n"
"  end\n"
"  if valid then\n"
"    p_lock = get_be(old, 10, 4)\n"
"    for pos = 22, size, 17 do\n"
"      local t = get_be(old, pos, 8)\n"
"      if t > now + max_future then valid = false break end\n"
"      stamps[#stamps + 1] = { t, string.sub(old, pos + 8, pos + 15),\n"
"        string.byte(old, pos + 16) ~= 0 }\n"
"    end\n"
"  end\n"
"  if not valid then\n"
"    p_lock, p_locked_until, stamps, ignored = 0, 0, {}, 1\n"
"  end\n"
"end\n"
"local function in_window(t)\n"
"  if t > now + tolerance then return false end\n"
"  return math.min(t, now) > now - period\n"
"end\n"
"local locked_until = 0\n"
"if p_locked_until > now and p_locked_until - now <= p_lock + tolerance then\n"
"  locked_until = math.min(p_locked_until, now + lock)\n"
"end\n"
"local in_count, already, exceeded = 0, false, false\n"
"for _, s in ipairs(stamps) do\n"
"  if in_window(s[1]) then\n"
"    in_count = in_count + 1\n"
"    if s[2] == hash then\n"
"      already = true\n"
"      exceeded = s[3] or locked_until > now\n"
"    end\n"
"  end\n"
"end\n"
"if already then\n"
"  return { exceeded and 1 or 0, in_count, locked_until, 1, ignored }\n"
"end\n"
"local count_in_window = in_count + 1\n"
"if in_count >= count then count_in_window = count + 1 end\n"
"exceeded = locked_until > now or in_count + 1 > count\n"
"if in_count + 1 > count and lock > 0 then\n"
"  locked_until = math.max(locked_until, now + lock)\n"
"end\n"
"if record then\n"
"  local out = { string.char(1), put_be(count, 4), put_be(period, 4),\n"
"    put_be(lock, 4), put_be(locked_until, 8) }\n"
"  local first_kept, n = 0, 0\n"
"  if in_count > count then first_kept = in_count - count end\n"
"  for _, s in ipairs(stamps) do\n"
"    if in_window(s[1]) then\n"
"      if n >= first_kept then\n"
"        out[#out + 1] = put_be(math.min(s[1], now), 8) .. s[2] ..\n"
"          flag(s[3])\n"
"      end\n"
"      n = n + 1\n"
"    end\n"
"  end\n"
"  out[#out + 1] = put_be(now, 8) .. hash .. flag(exceeded)\n"
"  redis.call('SET', KEYS[1], table.concat(out), 'EX',\n"
"    math.max(now + period, locked_until) - now)\n"
"end\n"
"return { exceeded and 1 or 0, count_in_window, locked_until, 0, ignored }\n"
};

static int
redis_window_result(const redisReply *reply,
		    struct loopguard_window_result *result_r,
		    const char **error_r)
{
	unsigned int i;

	if (reply->type == REDIS_REPLY_ERROR) {
		*error_r = t_strdup_printf("window script failed: %s",
					   loopguard_redis_reply_text(reply));
		return -1;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5) {
		*error_r = t_strdup_printf("window script: unexpected reply %s",
					   loopguard_redis_reply_text(reply));
		return -1;
	}
	for (i = 0; i < reply->elements; i++) {
		if (reply->element[i]->type != REDIS_REPLY_INTEGER ||
		    reply->element[i]->integer < 0) {
			*error_r = "window script: unexpected reply";
			return -1;
		}
	}
	result_r->exceeded = reply->element[0]->integer != 0;
	result_r->count_in_window = (unsigned int)reply->element[1]->integer;
	result_r->locked_until = (time_t)reply->element[2]->integer;
	result_r->already_counted = reply->element[3]->integer != 0;
	result_r->payload_ignored = reply->element[4]->integer != 0;
	return 0;
}

int loopguard_redis_window_check(struct loopguard_redis_conn *conn,
				 const char *rkey,
				 const struct loopguard_window_params *params,
				 const unsigned char message_hash[
					LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE],
				 time_t now, bool record,
				 struct loopguard_window_result *result_r,
				 const char **error_r)
{
	const char *argv[8];
	size_t argvlen[8];
	redisReply *reply;
	unsigned int i;
	int ret;

	i_zero(result_r);
	/* what loopguard_window_apply() answers without looking */
	if (params->count == 0 || params->period == 0 || now < 0)
		return 0;

	argv[0] = rkey;
	argv[1] = dec2str(params->count);
	argv[2] = dec2str(params->period);
	argv[3] = dec2str(params->lock);
	argv[4] = dec2str(now);
	argv[6] = record ? "1" : "0";
	argv[7] = dec2str(LOOPGUARD_WINDOW_CLOCK_TOLERANCE);
	for (i = 0; i < N_ELEMENTS(argv); i++) {
		if (i != 5)
			argvlen[i] = strlen(argv[i]);
	}
	argv[5] = (const char *)message_hash;
	argvlen[5] = LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE;

	if (loopguard_redis_script_run(conn, &redis_window_script, 1,
				       N_ELEMENTS(argv), argv, argvlen,
				       &reply, error_r) < 0)
		return -1;
	ret = redis_window_result(reply, result_r, error_r);
	freeReplyObject(reply);
	if (ret < 0)
		i_zero(result_r);
	return ret;
}

const char *loopguard_redis_window_script_text(void)
{
	return redis_window_script.text;
}
