#ifndef LOOPTEST_DUPLICATE_H
#define LOOPTEST_DUPLICATE_H

/* looptest's duplicate check: has this user already received a message with
   this fingerprint within the period? */

#include "looptest-checks.h"

struct sieve_runtime_env;

/* Looks the fingerprint up in the user's store and remembers it once the
   delivery has succeeded. Returns SIEVE_EXEC_OK with *duplicate_r set, or
   what a state error calls for. */
int looptest_duplicate_check(const struct sieve_runtime_env *renv,
			     const unsigned char fingerprint[
				     LOOPTEST_FINGERPRINT_SIZE],
			     unsigned int period, bool *duplicate_r);

#endif
