#ifndef EXT_LOOPTEST_COMMON_H
#define EXT_LOOPTEST_COMMON_H

/* Definitions shared by the vnd.loopguard.looptest extension's files. */

extern const struct sieve_extension_def looptest_extension;
extern const struct sieve_command_def tst_looptest;
extern const struct sieve_operation_def tst_looptest_operation;

#endif
