#ifndef LOOPGUARD_REDIS_LOG_H
#define LOOPGUARD_REDIS_LOG_H

/* The Redis store's log entries: one list element per event, a version
   and the fields separated by tabs. */

#include "loopguard-store.h"

/* The log key is kept this long after its last event: it has no entry
   that expires on its own, and every key must. */
#define LOOPGUARD_REDIS_LOG_TTL_SECS (30 * 24 * 3600)

/* The stored form of event, from the data stack. Text fields are
   sanitized (no tabs), so that the line always splits back. */
const char *loopguard_redis_log_entry(const struct loopguard_store_event *event);
/* Parses a stored entry; the strings point into a data stack copy.
   Returns FALSE for an entry of another form. */
bool loopguard_redis_log_entry_parse(const char *line,
				     struct loopguard_store_event *event_r);

#endif
