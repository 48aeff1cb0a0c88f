#ifndef LOOPGUARD_TAGS_H
#define LOOPGUARD_TAGS_H

/* Validation of the tagged arguments that looptest and ratelimit share. */

struct sieve_validator;
struct sieve_ast_argument;
struct sieve_command;

/* Checks ":tag <number>" and clamps the number to max (when max > 0) with a
   compile warning. */
bool loopguard_tag_validate_number(struct sieve_validator *valdtr,
				   struct sieve_ast_argument **arg,
				   struct sieve_command *cmd,
				   sieve_number_t max);

/* The value of a number tag as a test uses it at run time: at most max
   (0: no maximum), and at most UINT_MAX. The compile-time clamp is not
   enough: a binary compiled under other settings is run as it is. */
unsigned int loopguard_tag_clamp(sieve_number_t value, sieve_number_t max);

/* Checks ":tag <string>" or ":tag <string-list>". */
bool loopguard_tag_validate_string(struct sieve_validator *valdtr,
				   struct sieve_ast_argument **arg,
				   struct sieve_command *cmd,
				   enum sieve_ast_argument_type type);

#endif
