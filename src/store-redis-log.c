/* Encoding and decoding the Redis store's log entries. */

#include "lib.h"
#include "strnum.h"

#include "loopguard-text.h"
#include "store-redis-log.h"

#define LOOPGUARD_REDIS_LOG_VERSION "1"
#define LOOPGUARD_REDIS_LOG_FIELDS 10
/* reasons are check names: longer than a key may be */
#define LOOPGUARD_REDIS_REASONS_MAX 1000

static const char *redis_log_text(const char *str, size_t max)
{
	return str == NULL ? "" : loopguard_text_sanitize(str, max);
}

/* One tab-separated line: the text fields are sanitized, so none holds a
   tab. */
const char *loopguard_redis_log_entry(const struct loopguard_store_event *event)
{
	return t_strdup_printf(LOOPGUARD_REDIS_LOG_VERSION
		"\t%lld\t%u\t%u\t%lld\t%s\t%s\t%s\t%s\t%s",
		(long long)event->time, event->count, event->window,
		(long long)event->locked_until,
		redis_log_text(event->test, LOOPGUARD_TEXT_MAX),
		redis_log_text(event->handle, LOOPGUARD_TEXT_MAX),
		redis_log_text(event->key, LOOPGUARD_TEXT_MAX),
		redis_log_text(event->reasons, LOOPGUARD_REDIS_REASONS_MAX),
		redis_log_text(event->message_id, LOOPGUARD_TEXT_MAX));
}

bool loopguard_redis_log_entry_parse(const char *line,
				     struct loopguard_store_event *event_r)
{
	const char *const *fields = t_strsplit(line, "\t");
	long long time, locked_until;

	i_zero(event_r);
	if (str_array_length(fields) != LOOPGUARD_REDIS_LOG_FIELDS ||
	    strcmp(fields[0], LOOPGUARD_REDIS_LOG_VERSION) != 0 ||
	    str_to_llong(fields[1], &time) < 0 ||
	    str_to_uint(fields[2], &event_r->count) < 0 ||
	    str_to_uint(fields[3], &event_r->window) < 0 ||
	    str_to_llong(fields[4], &locked_until) < 0)
		return FALSE;
	event_r->time = (time_t)time;
	event_r->locked_until = (time_t)locked_until;
	event_r->test = fields[5];
	event_r->handle = fields[6];
	event_r->key = fields[7];
	event_r->reasons = fields[8];
	event_r->message_id = fields[9];
	return TRUE;
}
