#ifndef LOOPGUARD_PATH_H
#define LOOPGUARD_PATH_H

/* Where a user's store lives, shared by the Sieve and doveadm plugins. */

/* Resolves the configured sieve_loopguard_db against the user's home
   ("~/file" or a relative path); an absolute path needs no home (home may
   be NULL then). Returns 0, or -1 when the path needs a home directory and
   there is none. */
int loopguard_path_resolve(const char *configured, const char *home,
			   const char **path_r, const char **error_r);

#endif
