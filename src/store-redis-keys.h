#ifndef LOOPGUARD_REDIS_KEYS_H
#define LOOPGUARD_REDIS_KEYS_H

/* The Redis store's key layout. Every key of one user begins with
   "<prefix>:{<user>}:", so that they share one Redis Cluster hash slot and
   one SCAN pattern finds them all:

     <prefix>:{<user>}:w:<length of handle>:<handle>:<key>   a window
     <prefix>:{<user>}:f:<fingerprint, hex>                 a fingerprint
     <prefix>:{<user>}:log                                  the log

   Handles and keys are stored names (loopguard_text_stored_name()); the
   handle's length makes the split unambiguous whatever they contain. */

/* "<prefix>:{<user>}:" from pool. A user name that could end the hash tag
   early or act as a SCAN wildcard ({ } * ? [ ] \, spaces, control or
   non-ASCII bytes) is replaced by '#' and its SHA-256 in hex, so that no
   user's keys ever match another user's pattern. */
const char *loopguard_redis_key_user(pool_t pool, const char *prefix,
				     const char *username);

const char *loopguard_redis_key_window(const char *user_prefix,
				       const char *handle, const char *key);
/* Splits a window's key. Returns FALSE when it is not one. */
bool loopguard_redis_key_window_parse(const char *user_prefix,
				      const char *rkey, size_t size,
				      const char **handle_r,
				      const char **key_r);
const char *loopguard_redis_key_fingerprint(const char *user_prefix,
					    const unsigned char *fingerprint,
					    size_t size);
const char *loopguard_redis_key_log(const char *user_prefix);

/* A SCAN MATCH pattern: user_prefix, then the window prefix of handle
   (all windows when handle is NULL, everything of the user when
   windows_only is FALSE), then "*". */
const char *loopguard_redis_key_pattern(const char *user_prefix,
					bool windows_only,
					const char *handle);

#endif
