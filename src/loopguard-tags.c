/* Tag validation shared by looptest and ratelimit. */

#include "lib.h"

#include "sieve-common.h"
#include "sieve-ast.h"
#include "sieve-commands.h"
#include "sieve-validator.h"

#include "loopguard-tags.h"

bool loopguard_tag_validate_number(struct sieve_validator *valdtr,
				   struct sieve_ast_argument **arg,
				   struct sieve_command *cmd,
				   sieve_number_t max)
{
	struct sieve_ast_argument *tag = *arg;
	sieve_number_t number;

	*arg = sieve_ast_arguments_detach(*arg, 1);
	if (!sieve_validate_tag_parameter(valdtr, cmd, tag, *arg, NULL, 0,
					  SAAT_NUMBER, FALSE))
		return FALSE;

	number = sieve_ast_argument_number(*arg);
	if (max > 0 && number > max) {
		sieve_argument_validate_warning(valdtr, *arg,
			"the :%s value %llu of the %s %s is over the "
			"maximum; using %llu", sieve_ast_argument_tag(tag),
			(unsigned long long)number,
			sieve_command_identifier(cmd),
			sieve_command_type_name(cmd),
			(unsigned long long)max);
		sieve_ast_argument_number_set(*arg, max);
	}

	*arg = sieve_ast_argument_next(*arg);
	return TRUE;
}

unsigned int loopguard_tag_clamp(sieve_number_t value, sieve_number_t max)
{
	if (max > 0 && value > max)
		value = max;
	return value > UINT_MAX ? UINT_MAX : (unsigned int)value;
}

bool loopguard_tag_validate_string(struct sieve_validator *valdtr,
				   struct sieve_ast_argument **arg,
				   struct sieve_command *cmd,
				   enum sieve_ast_argument_type type)
{
	struct sieve_ast_argument *tag = *arg;

	*arg = sieve_ast_arguments_detach(*arg, 1);
	if (!sieve_validate_tag_parameter(valdtr, cmd, tag, *arg, NULL, 0,
					  type, FALSE))
		return FALSE;

	*arg = sieve_ast_argument_next(*arg);
	return TRUE;
}
