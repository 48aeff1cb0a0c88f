#ifndef LOOPGUARD_REDIS_SETTINGS_H
#define LOOPGUARD_REDIS_SETTINGS_H

#include "net.h"

/* The Redis store's location, "redis:key=value:key=value...", parsed.
   The keys follow Dovecot's dict-redis where it has one (host, port,
   path, db, prefix, timeout_msecs, password); socket is path's name in
   sieve_loopguard_db, password_file reads the password from a file.
   Values cannot contain ':' (the separator): a password that does must
   come from password_file. */

#define LOOPGUARD_REDIS_DEFAULT_PORT 6379
#define LOOPGUARD_REDIS_DEFAULT_PREFIX "loopguard"
#define LOOPGUARD_REDIS_DEFAULT_TIMEOUT_MSECS 1000

struct loopguard_redis_settings {
	/* host and port, or path (a unix socket) when path is not NULL */
	const char *host;
	in_port_t port;
	const char *path;
	unsigned int db;
	/* the first part of every key, may be "" */
	const char *prefix;
	/* bounds connecting and every command */
	unsigned int timeout_msecs;
	/* NULL without one; never part of any message */
	const char *password;
};

/* Whether location names the Redis store. */
bool loopguard_redis_location_claims(const char *location);

/* Parses location into set_r, allocating from pool. Reads password_file.
   Returns 0, or -1 with *error_r set (it names a parameter, never a
   password's value). */
int loopguard_redis_settings_parse(pool_t pool, const char *location,
				   struct loopguard_redis_settings *set_r,
				   const char **error_r);

/* "host:port" or the socket's path, for messages. */
const char *
loopguard_redis_settings_address(const struct loopguard_redis_settings *set);

#endif
