#ifndef EXT_RATELIMIT_COMMON_H
#define EXT_RATELIMIT_COMMON_H

/* Definitions shared by the vnd.loopguard.ratelimit extension's files. */

extern const struct sieve_extension_def ratelimit_extension;
extern const struct sieve_command_def tst_ratelimit;
extern const struct sieve_operation_def tst_ratelimit_operation;

#endif
