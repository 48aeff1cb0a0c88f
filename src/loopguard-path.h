#ifndef LOOPGUARD_PATH_H
#define LOOPGUARD_PATH_H

/* Where a user's store lives, shared by the Sieve and doveadm plugins. */

/* A location in this form names a store server, not a file: it is passed
   on as it is, to the driver that claims it (loopguard-store.h). */
#define LOOPGUARD_PATH_URI_PREFIX "redis:"

/* Whether the configured location is relative to the home directory. */
bool loopguard_path_needs_home(const char *configured);

/* Resolves the configured sieve_loopguard_db against the user's home
   ("~/file" or a relative path); an absolute path or a "redis:" URI needs
   no home (home may be NULL then). Returns 0, or -1 when the path needs a
   home directory and there is none. */
int loopguard_path_resolve(const char *configured, const char *home,
			   const char **path_r, const char **error_r);

#endif
