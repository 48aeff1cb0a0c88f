/* The looptest test: is this message circulating, or sent by a robot? */

#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "str.h"
#include "str-sanitize.h"

#include "sieve-common.h"
#include "sieve-code.h"
#include "sieve-extensions.h"
#include "sieve-commands.h"
#include "sieve-stringlist.h"
#include "sieve-validator.h"
#include "sieve-generator.h"
#include "sieve-interpreter.h"
#include "sieve-message.h"
#include "sieve-runtime.h"
#include "sieve-runtime-trace.h"
#include "sieve-execute.h"
#include "sieve-binary.h"
#include "sieve-dump.h"
#include "sieve-ext-variables.h"

#include "loopguard-store.h"
#include "loopguard-runtime.h"
#include "loopguard-tags.h"
#include "looptest-checks.h"
#include "looptest-duplicate.h"
#include "ext-looptest-common.h"

/* Looptest test
 *
 * Syntax:
 *   looptest [":checks" <names: string-list>] [":hops" <number>]
 *            [":seconds" <number>] [":addresses" <string-list>]
 *            [":reasons" <variable-name: string>]
 */

static bool
tst_looptest_registered(struct sieve_validator *valdtr,
			const struct sieve_extension *ext,
			struct sieve_command_registration *cmd_reg);
static bool
tst_looptest_generate(const struct sieve_codegen_env *cgenv,
		      struct sieve_command *cmd);

const struct sieve_command_def tst_looptest = {
	.identifier = "looptest",
	.type = SCT_TEST,
	.positional_args = 0,
	.subtests = 0,
	.block_allowed = FALSE,
	.block_required = FALSE,
	.registered = tst_looptest_registered,
	.generate = tst_looptest_generate,
};

/*
 * Looptest tags
 */

static bool
tst_looptest_validate_checks_tag(struct sieve_validator *valdtr,
				 struct sieve_ast_argument **arg,
				 struct sieve_command *cmd);
static bool
tst_looptest_validate_hops_tag(struct sieve_validator *valdtr,
			       struct sieve_ast_argument **arg,
			       struct sieve_command *cmd);
static bool
tst_looptest_validate_seconds_tag(struct sieve_validator *valdtr,
				  struct sieve_ast_argument **arg,
				  struct sieve_command *cmd);
static bool
tst_looptest_validate_addresses_tag(struct sieve_validator *valdtr,
				    struct sieve_ast_argument **arg,
				    struct sieve_command *cmd);
static bool
tst_looptest_validate_reasons_tag(struct sieve_validator *valdtr,
				  struct sieve_ast_argument **arg,
				  struct sieve_command *cmd);

static const struct sieve_argument_def looptest_checks_tag = {
	.identifier = "checks",
	.validate = tst_looptest_validate_checks_tag,
};

static const struct sieve_argument_def looptest_hops_tag = {
	.identifier = "hops",
	.validate = tst_looptest_validate_hops_tag,
};

static const struct sieve_argument_def looptest_seconds_tag = {
	.identifier = "seconds",
	.validate = tst_looptest_validate_seconds_tag,
};

static const struct sieve_argument_def looptest_addresses_tag = {
	.identifier = "addresses",
	.validate = tst_looptest_validate_addresses_tag,
};

static const struct sieve_argument_def looptest_reasons_tag = {
	.identifier = "reasons",
	.validate = tst_looptest_validate_reasons_tag,
};

/* Codes for optional arguments */

enum tst_looptest_optional {
	OPT_END,
	OPT_CHECKS,
	OPT_HOPS,
	OPT_SECONDS,
	OPT_ADDRESSES,
	OPT_REASONS,
};

/*
 * Looptest operation
 */

static bool
tst_looptest_operation_dump(const struct sieve_dumptime_env *denv,
			    sieve_size_t *address);
static int
tst_looptest_operation_execute(const struct sieve_runtime_env *renv,
			       sieve_size_t *address);

const struct sieve_operation_def tst_looptest_operation = {
	.mnemonic = "LOOPTEST",
	.ext_def = &looptest_extension,
	.dump = tst_looptest_operation_dump,
	.execute = tst_looptest_operation_execute,
};

/*
 * Tag validation
 */

static bool
tst_looptest_validate_checks_tag(struct sieve_validator *valdtr,
				 struct sieve_ast_argument **arg,
				 struct sieve_command *cmd)
{
	struct sieve_ast_argument *tag = *arg, *item;
	unsigned int checks = 0, item_checks;

	*arg = sieve_ast_arguments_detach(*arg, 1);
	if (!sieve_validate_tag_parameter(valdtr, cmd, tag, *arg, NULL, 0,
					  SAAT_STRING_LIST, TRUE))
		return FALSE;

	/* The names become a bit mask at compile time, so a typo is caught
	   here rather than silently checking nothing at delivery. */
	if (sieve_ast_argument_type(*arg) == SAAT_STRING)
		item = *arg;
	else
		item = sieve_ast_strlist_first(*arg);
	for (; item != NULL; item = sieve_ast_strlist_next(item)) {
		const char *name = sieve_ast_argument_strc(item);

		if (!looptest_checks_parse_name(name, &item_checks)) {
			sieve_argument_validate_error(valdtr, item,
				"looptest test: unknown check name '%s' "
				"(valid names: %s)", str_sanitize(name, 64),
				looptest_checks_valid_names());
			return FALSE;
		}
		checks |= item_checks;
		if (sieve_ast_argument_type(*arg) == SAAT_STRING)
			break;
	}

	sieve_ast_argument_number_substitute(*arg, checks);
	(*arg)->argument = sieve_argument_create((*arg)->ast,
						 &number_argument,
						 tag->argument->ext,
						 tag->argument->id_code);
	*arg = sieve_ast_argument_next(*arg);
	return TRUE;
}

static bool
tst_looptest_validate_hops_tag(struct sieve_validator *valdtr,
			       struct sieve_ast_argument **arg,
			       struct sieve_command *cmd)
{
	return loopguard_tag_validate_number(valdtr, arg, cmd, 0);
}

static bool
tst_looptest_validate_seconds_tag(struct sieve_validator *valdtr,
				  struct sieve_ast_argument **arg,
				  struct sieve_command *cmd)
{
	const struct loopguard_context *ctx = cmd->ext->context;

	return loopguard_tag_validate_number(valdtr, arg, cmd,
					     ctx->set.max_period);
}

static bool
tst_looptest_validate_addresses_tag(struct sieve_validator *valdtr,
				    struct sieve_ast_argument **arg,
				    struct sieve_command *cmd)
{
	return loopguard_tag_validate_string(valdtr, arg, cmd,
					     SAAT_STRING_LIST);
}

static bool
tst_looptest_validate_reasons_tag(struct sieve_validator *valdtr,
				  struct sieve_ast_argument **arg,
				  struct sieve_command *cmd)
{
	const struct loopguard_context *ctx = cmd->ext->context;
	struct sieve_ast_argument *tag = *arg;

	if (ctx->var_ext == NULL ||
	    !sieve_ext_variables_is_active(ctx->var_ext, valdtr)) {
		sieve_argument_validate_error(valdtr, *arg,
			"the :reasons argument of the looptest test "
			"requires the variables extension");
		return FALSE;
	}

	*arg = sieve_ast_arguments_detach(*arg, 1);
	if (*arg == NULL) {
		sieve_argument_validate_error(valdtr, tag,
			"the :reasons tag of the looptest test requires a "
			"variable name as parameter");
		return FALSE;
	}
	if (!sieve_variable_argument_activate(ctx->var_ext, ctx->var_ext,
					      valdtr, cmd, *arg, TRUE))
		return FALSE;
	(*arg)->argument->id_code = tag->argument->id_code;

	*arg = sieve_ast_argument_next(*arg);
	return TRUE;
}

/*
 * Command registration
 */

static bool
tst_looptest_registered(struct sieve_validator *valdtr,
			const struct sieve_extension *ext,
			struct sieve_command_registration *cmd_reg)
{
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &looptest_checks_tag, OPT_CHECKS);
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &looptest_hops_tag, OPT_HOPS);
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &looptest_seconds_tag, OPT_SECONDS);
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &looptest_addresses_tag, OPT_ADDRESSES);
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &looptest_reasons_tag, OPT_REASONS);
	return TRUE;
}

/*
 * Code generation
 */

static bool
tst_looptest_generate(const struct sieve_codegen_env *cgenv,
		      struct sieve_command *cmd)
{
	sieve_operation_emit(cgenv->sblock, cmd->ext,
			     &tst_looptest_operation);
	return sieve_generate_arguments(cgenv, cmd, NULL);
}

/*
 * Code dump
 */

static bool
tst_looptest_dump_checks(const struct sieve_dumptime_env *denv,
			 sieve_size_t *address)
{
	struct sieve_operand operand;
	sieve_number_t checks;

	/* The names were turned into a bit mask at compile time; show them
	   as names again. */
	sieve_code_mark(denv);
	if (!sieve_operand_read(denv->sblock, address, "checks", &operand) ||
	    !sieve_operand_is_number(&operand) ||
	    !sieve_binary_read_integer(denv->sblock, address, &checks))
		return FALSE;
	sieve_code_dumpf(denv, "checks: %s",
			 looptest_checks_reasons((unsigned int)checks));
	return TRUE;
}

static bool
tst_looptest_operation_dump(const struct sieve_dumptime_env *denv,
			    sieve_size_t *address)
{
	int opt_code = 0;

	sieve_code_dumpf(denv, "LOOPTEST");
	sieve_code_descend(denv);

	for (;;) {
		bool opok = TRUE;
		int opt;

		if ((opt = sieve_opr_optional_dump(denv, address,
						   &opt_code)) < 0)
			return FALSE;
		if (opt == 0)
			break;

		switch (opt_code) {
		case OPT_CHECKS:
			opok = tst_looptest_dump_checks(denv, address);
			break;
		case OPT_HOPS:
			opok = sieve_opr_number_dump(denv, address, "hops");
			break;
		case OPT_SECONDS:
			opok = sieve_opr_number_dump(denv, address,
						     "seconds");
			break;
		case OPT_ADDRESSES:
			opok = sieve_opr_stringlist_dump(denv, address,
							 "addresses");
			break;
		case OPT_REASONS:
			opok = sieve_opr_string_dump(denv, address,
						     "reasons");
			break;
		default:
			return FALSE;
		}
		if (!opok)
			return FALSE;
	}
	return TRUE;
}

/*
 * Code execution
 */

static int
tst_looptest_set_reasons(const struct sieve_runtime_env *renv,
			 struct sieve_variable_storage *storage,
			 unsigned int var_index, unsigned int fired)
{
	string_t *var;

	if (!sieve_variable_get_modifiable(storage, var_index, &var)) {
		sieve_runtime_trace_error(renv,
			"looptest: cannot assign the :reasons variable");
		return SIEVE_EXEC_BIN_CORRUPT;
	}
	str_truncate(var, 0);
	str_append(var, looptest_checks_reasons(fired));
	return SIEVE_EXEC_OK;
}

/* The test's arguments, each tag absent from the script left at its
   configured default. */
struct tst_looptest_args {
	sieve_number_t checks, hops, seconds;
	/* NULL without :addresses */
	const char *const *extra_addresses;
	/* NULL without :reasons */
	struct sieve_variable_storage *reasons_storage;
	unsigned int reasons_index;
};

static int
tst_looptest_read_operands(const struct sieve_runtime_env *renv,
			   sieve_size_t *address,
			   struct tst_looptest_args *args_r)
{
	const struct loopguard_context *ctx = renv->oprtn->ext->context;
	struct sieve_stringlist *addresses_list = NULL;
	int opt_code = 0, ret;

	i_zero(args_r);
	args_r->checks = LOOPTEST_CHECKS_DEFAULT;
	args_r->hops = ctx->set.hops;
	args_r->seconds = ctx->set.duplicate_period;

	for (;;) {
		int opt;

		if ((opt = sieve_opr_optional_read(renv, address,
						   &opt_code)) < 0)
			return SIEVE_EXEC_BIN_CORRUPT;
		if (opt == 0)
			break;

		switch (opt_code) {
		case OPT_CHECKS:
			ret = sieve_opr_number_read(renv, address, "checks",
						    &args_r->checks);
			break;
		case OPT_HOPS:
			ret = sieve_opr_number_read(renv, address, "hops",
						    &args_r->hops);
			break;
		case OPT_SECONDS:
			ret = sieve_opr_number_read(renv, address, "seconds",
						    &args_r->seconds);
			break;
		case OPT_ADDRESSES:
			ret = sieve_opr_stringlist_read(renv, address,
				"addresses", &addresses_list);
			break;
		case OPT_REASONS:
			ret = sieve_variable_operand_read(renv, address,
				"reasons", &args_r->reasons_storage,
				&args_r->reasons_index);
			break;
		default:
			sieve_runtime_trace_error(renv,
				"unknown optional operand");
			ret = SIEVE_EXEC_BIN_CORRUPT;
		}
		if (ret <= 0)
			return ret;
	}

	if (addresses_list != NULL) {
		ret = sieve_stringlist_read_all(addresses_list,
						pool_datastack_create(),
						&args_r->extra_addresses);
		if (ret < 0) {
			sieve_runtime_trace_error(renv,
				"invalid :addresses list item");
			return addresses_list->exec_status;
		}
	}
	return SIEVE_EXEC_OK;
}

static int
tst_looptest_operation_execute(const struct sieve_runtime_env *renv,
			       sieve_size_t *address)
{
	const struct loopguard_context *ctx = renv->oprtn->ext->context;
	struct tst_looptest_args args;
	struct looptest_envelope envelope;
	struct looptest_result result;
	bool duplicate;
	int ret;

	/*
	 * Read operands
	 */

	if ((ret = tst_looptest_read_operands(renv, address, &args)) <= 0)
		return ret;

	/*
	 * Perform operation
	 */

	sieve_runtime_trace(renv, SIEVE_TRLVL_TESTS, "looptest test");
	sieve_runtime_trace_descend(renv);

	i_zero(&envelope);
	envelope.sender = loopguard_runtime_sender(renv);
	envelope.user_addresses =
		loopguard_runtime_user_addresses(renv, args.extra_addresses);
	envelope.hops_threshold = loopguard_tag_clamp(args.hops, 0);

	ret = loopguard_runtime_read_message(renv, "looptest", &envelope,
					     (unsigned int)args.checks,
					     &result);
	if (ret != SIEVE_EXEC_OK)
		return ret;

	if ((args.checks & LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_DUPLICATE)) != 0) {
		/* clamped again: a binary compiled under other settings */
		ret = looptest_duplicate_check(renv, result.fingerprint,
			loopguard_tag_clamp(args.seconds, ctx->set.max_period),
			&duplicate);
		if (ret != SIEVE_EXEC_OK)
			return ret;
		if (duplicate) {
			result.fired |= LOOPTEST_CHECK_BIT(
				LOOPTEST_CHECK_DUPLICATE);
		}
	}
	result.fired &= args.checks;

	if (args.reasons_storage != NULL) {
		ret = tst_looptest_set_reasons(renv, args.reasons_storage,
					       args.reasons_index,
					       result.fired);
		if (ret != SIEVE_EXEC_OK)
			return ret;
	}

	if (result.fired != 0) {
		const struct loopguard_store_event event = {
			.test = "looptest",
			.handle = "",
			.key = envelope.sender == NULL ? "" : envelope.sender,
			.reasons = looptest_checks_reasons(result.fired),
			.count = result.received_count,
		};

		sieve_runtime_trace(renv, SIEVE_TRLVL_TESTS,
			"checks fired: %s",
			looptest_checks_reasons(result.fired));
		loopguard_runtime_report(renv, &event);
	} else {
		sieve_runtime_trace(renv, SIEVE_TRLVL_TESTS,
				    "no check fired");
	}

	sieve_interpreter_set_test_result(renv->interp, result.fired != 0);
	return SIEVE_EXEC_OK;
}
