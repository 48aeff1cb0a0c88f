/* The ratelimit test: has this key sent more than it may in the window? */

#include "lib.h"
#include <time.h>
#include "buffer.h"
#include "str.h"
#include "str-sanitize.h"
#include "message-address.h"
#include "mail-storage.h"

#include "sieve-common.h"
#include "sieve-code.h"
#include "sieve-extensions.h"
#include "sieve-commands.h"
#include "sieve-validator.h"
#include "sieve-generator.h"
#include "sieve-interpreter.h"
#include "sieve-message.h"
#include "sieve-runtime.h"
#include "sieve-runtime-trace.h"
#include "sieve-dump.h"

#include "loopguard-store.h"
#include "loopguard-runtime.h"
#include "loopguard-tags.h"
#include "loopguard-text.h"
#include "looptest-checks.h"
#include "ratelimit-key.h"
#include "loopguard-window.h"
#include "ext-ratelimit-common.h"

/* Ratelimit test
 *
 * Syntax:
 *   ratelimit [":key" <string>] [":thread"] [":handle" <string>]
 *             [":count" <number>] [":seconds" <number>] [":lock" <number>]
 *             [":noupdate"]
 */

static bool
tst_ratelimit_registered(struct sieve_validator *valdtr,
			 const struct sieve_extension *ext,
			 struct sieve_command_registration *cmd_reg);
static bool
tst_ratelimit_generate(const struct sieve_codegen_env *cgenv,
		       struct sieve_command *cmd);

const struct sieve_command_def tst_ratelimit = {
	.identifier = "ratelimit",
	.type = SCT_TEST,
	.positional_args = 0,
	.subtests = 0,
	.block_allowed = FALSE,
	.block_required = FALSE,
	.registered = tst_ratelimit_registered,
	.generate = tst_ratelimit_generate,
};

/*
 * Ratelimit tags
 */

static bool
tst_ratelimit_validate_string_tag(struct sieve_validator *valdtr,
				  struct sieve_ast_argument **arg,
				  struct sieve_command *cmd);
static bool
tst_ratelimit_validate_count_tag(struct sieve_validator *valdtr,
				 struct sieve_ast_argument **arg,
				 struct sieve_command *cmd);
static bool
tst_ratelimit_validate_period_tag(struct sieve_validator *valdtr,
				  struct sieve_ast_argument **arg,
				  struct sieve_command *cmd);
static bool
tst_ratelimit_validate_seconds_tag(struct sieve_validator *valdtr,
				   struct sieve_ast_argument **arg,
				   struct sieve_command *cmd);

static const struct sieve_argument_def ratelimit_key_tag = {
	.identifier = "key",
	.validate = tst_ratelimit_validate_string_tag,
};

static const struct sieve_argument_def ratelimit_thread_tag = {
	.identifier = "thread",
};

static const struct sieve_argument_def ratelimit_handle_tag = {
	.identifier = "handle",
	.validate = tst_ratelimit_validate_string_tag,
};

static const struct sieve_argument_def ratelimit_count_tag = {
	.identifier = "count",
	.validate = tst_ratelimit_validate_count_tag,
};

static const struct sieve_argument_def ratelimit_seconds_tag = {
	.identifier = "seconds",
	.validate = tst_ratelimit_validate_seconds_tag,
};

static const struct sieve_argument_def ratelimit_lock_tag = {
	.identifier = "lock",
	.validate = tst_ratelimit_validate_period_tag,
};

static const struct sieve_argument_def ratelimit_noupdate_tag = {
	.identifier = "noupdate",
};

/* Codes for optional arguments */

enum tst_ratelimit_optional {
	OPT_END,
	OPT_KEY,
	OPT_THREAD,
	OPT_HANDLE,
	OPT_COUNT,
	OPT_SECONDS,
	OPT_LOCK,
	OPT_NOUPDATE,
};

/*
 * Ratelimit operation
 */

static bool
tst_ratelimit_operation_dump(const struct sieve_dumptime_env *denv,
			     sieve_size_t *address);
static int
tst_ratelimit_operation_execute(const struct sieve_runtime_env *renv,
				sieve_size_t *address);

const struct sieve_operation_def tst_ratelimit_operation = {
	.mnemonic = "RATELIMIT",
	.ext_def = &ratelimit_extension,
	.dump = tst_ratelimit_operation_dump,
	.execute = tst_ratelimit_operation_execute,
};

/*
 * Tag validation
 */

static bool
tst_ratelimit_validate_string_tag(struct sieve_validator *valdtr,
				  struct sieve_ast_argument **arg,
				  struct sieve_command *cmd)
{
	return loopguard_tag_validate_string(valdtr, arg, cmd, SAAT_STRING);
}

static bool
tst_ratelimit_validate_count_tag(struct sieve_validator *valdtr,
				 struct sieve_ast_argument **arg,
				 struct sieve_command *cmd)
{
	const struct loopguard_context *ctx = cmd->ext->context;

	return loopguard_tag_validate_number(valdtr, arg, cmd,
					     ctx->set.max_count);
}

static bool
tst_ratelimit_validate_period_tag(struct sieve_validator *valdtr,
				  struct sieve_ast_argument **arg,
				  struct sieve_command *cmd)
{
	const struct loopguard_context *ctx = cmd->ext->context;

	return loopguard_tag_validate_number(valdtr, arg, cmd,
					     ctx->set.max_period);
}

/* An empty window would count nothing, so the test would never be true:
   a script that says :seconds 0 cannot mean that (:count 0 is the way to
   turn the test off). */
static bool
tst_ratelimit_validate_seconds_tag(struct sieve_validator *valdtr,
				   struct sieve_ast_argument **arg,
				   struct sieve_command *cmd)
{
	struct sieve_ast_argument *tag = *arg, *param;

	param = sieve_ast_argument_next(tag);
	if (param != NULL && sieve_ast_argument_type(param) == SAAT_NUMBER &&
	    sieve_ast_argument_number(param) == 0) {
		sieve_argument_validate_error(valdtr, param,
			"the :seconds value of the ratelimit test must be at "
			"least 1 (an empty window never counts anything; use "
			":count 0 to turn the test off)");
		return FALSE;
	}
	return tst_ratelimit_validate_period_tag(valdtr, arg, cmd);
}

/*
 * Command registration
 */

static bool
tst_ratelimit_registered(struct sieve_validator *valdtr,
			 const struct sieve_extension *ext,
			 struct sieve_command_registration *cmd_reg)
{
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &ratelimit_key_tag, OPT_KEY);
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &ratelimit_thread_tag, OPT_THREAD);
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &ratelimit_handle_tag, OPT_HANDLE);
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &ratelimit_count_tag, OPT_COUNT);
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &ratelimit_seconds_tag, OPT_SECONDS);
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &ratelimit_lock_tag, OPT_LOCK);
	sieve_validator_register_tag(valdtr, cmd_reg, ext,
				     &ratelimit_noupdate_tag, OPT_NOUPDATE);
	return TRUE;
}

/*
 * Code generation
 */

static bool
tst_ratelimit_generate(const struct sieve_codegen_env *cgenv,
		       struct sieve_command *cmd)
{
	sieve_operation_emit(cgenv->sblock, cmd->ext,
			     &tst_ratelimit_operation);
	return sieve_generate_arguments(cgenv, cmd, NULL);
}

/*
 * Code dump
 */

static bool
tst_ratelimit_operation_dump(const struct sieve_dumptime_env *denv,
			     sieve_size_t *address)
{
	int opt_code = 0;

	sieve_code_dumpf(denv, "RATELIMIT");
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
		case OPT_KEY:
			opok = sieve_opr_string_dump(denv, address, "key");
			break;
		case OPT_THREAD:
			sieve_code_dumpf(denv, "thread");
			break;
		case OPT_HANDLE:
			opok = sieve_opr_string_dump(denv, address, "handle");
			break;
		case OPT_COUNT:
			opok = sieve_opr_number_dump(denv, address, "count");
			break;
		case OPT_SECONDS:
			opok = sieve_opr_number_dump(denv, address,
						     "seconds");
			break;
		case OPT_LOCK:
			opok = sieve_opr_number_dump(denv, address, "lock");
			break;
		case OPT_NOUPDATE:
			sieve_code_dumpf(denv, "noupdate");
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

static const char *
tst_ratelimit_header(const struct sieve_runtime_env *renv, const char *name,
		     bool utf8)
{
	struct mail *mail = sieve_message_get_mail(renv->msgctx);
	const char *value;
	int ret;

	ret = utf8 ? mail_get_first_header_utf8(mail, name, &value) :
		mail_get_first_header(mail, name, &value);
	return ret > 0 ? value : NULL;
}

static const char *
tst_ratelimit_from_address(const struct sieve_runtime_env *renv)
{
	const struct message_address *addr;
	const char *from;

	from = tst_ratelimit_header(renv, "From", FALSE);
	if (from == NULL)
		return NULL;
	addr = message_address_parse(pool_datastack_create(),
				     (const unsigned char *)from,
				     strlen(from), 1, 0);
	if (addr == NULL || addr->mailbox == NULL || *addr->mailbox == '\0')
		return NULL;
	if (addr->domain == NULL || *addr->domain == '\0')
		return addr->mailbox;
	return t_strconcat(addr->mailbox, "@", addr->domain, NULL);
}

/* Identifies the message so that it is counted once per key: its
   Message-ID together with its content, as looptest's duplicate check
   fingerprints it. */
static int
tst_ratelimit_message_hash(const struct sieve_runtime_env *renv,
			   unsigned char hash_r[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE])
{
	struct looptest_envelope envelope;
	struct looptest_result result;
	int ret;

	i_zero(&envelope);
	ret = loopguard_runtime_read_message(renv, "ratelimit", &envelope,
		LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_DUPLICATE), &result);
	if (ret != SIEVE_EXEC_OK)
		return ret;
	ratelimit_key_message_hash(loopguard_runtime_message_id(renv),
				   result.fingerprint,
				   sizeof(result.fingerprint), hash_r,
				   LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE);
	return SIEVE_EXEC_OK;
}

static int
tst_ratelimit_check(const struct sieve_runtime_env *renv,
		    const char *handle, const char *key,
		    const struct loopguard_window_params *params, bool noupdate,
		    struct loopguard_window_result *result_r)
{
	unsigned char message_hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];
	struct loopguard_store *store;
	const char *error;
	time_t now = time(NULL);
	int ret;

	i_zero(result_r);
	if (now < 0) {
		/* Every time in the store would be in the future: counting
		   against it could make the test true for everyone. */
		e_warning(renv->event, "ratelimit test: the system clock is "
			  "before 1970 or failed (time() = %ld), test is "
			  "false", (long)now);
		sieve_runtime_warning(renv, NULL, "ratelimit test: no valid "
				      "time, test is false");
		return SIEVE_EXEC_OK;
	}
	if ((ret = tst_ratelimit_message_hash(renv, message_hash)) !=
	    SIEVE_EXEC_OK)
		return ret;
	if ((ret = loopguard_runtime_get_store(renv, "ratelimit",
					       &store)) != SIEVE_EXEC_OK ||
	    store == NULL)
		return ret;

	ret = loopguard_store_window_check(store, handle, key, params,
					   message_hash, now, !noupdate,
					   result_r, &error);
	if (ret < 0) {
		return loopguard_runtime_store_error(renv, "ratelimit", ret,
						     error);
	}
	return SIEVE_EXEC_OK;
}

/* The test's arguments, each tag absent from the script left at its
   configured default. */
struct tst_ratelimit_args {
	string_t *key, *handle;
	sieve_number_t count, seconds, lock;
	bool thread, noupdate;
};

static int
tst_ratelimit_read_operands(const struct sieve_runtime_env *renv,
			    sieve_size_t *address,
			    struct tst_ratelimit_args *args_r)
{
	const struct loopguard_context *ctx = renv->oprtn->ext->context;
	int opt_code = 0, ret;

	i_zero(args_r);
	args_r->count = ctx->set.ratelimit_count;
	args_r->seconds = ctx->set.ratelimit_period;
	args_r->lock = ctx->set.ratelimit_lock;

	for (;;) {
		int opt;

		if ((opt = sieve_opr_optional_read(renv, address,
						   &opt_code)) < 0)
			return SIEVE_EXEC_BIN_CORRUPT;
		if (opt == 0)
			break;

		switch (opt_code) {
		case OPT_KEY:
			ret = sieve_opr_string_read(renv, address, "key",
						    &args_r->key);
			break;
		case OPT_THREAD:
			args_r->thread = TRUE;
			ret = SIEVE_EXEC_OK;
			break;
		case OPT_HANDLE:
			ret = sieve_opr_string_read(renv, address, "handle",
						    &args_r->handle);
			break;
		case OPT_COUNT:
			ret = sieve_opr_number_read(renv, address, "count",
						    &args_r->count);
			break;
		case OPT_SECONDS:
			ret = sieve_opr_number_read(renv, address, "seconds",
						    &args_r->seconds);
			break;
		case OPT_LOCK:
			ret = sieve_opr_number_read(renv, address, "lock",
						    &args_r->lock);
			break;
		case OPT_NOUPDATE:
			args_r->noupdate = TRUE;
			ret = SIEVE_EXEC_OK;
			break;
		default:
			sieve_runtime_trace_error(renv,
				"unknown optional operand");
			ret = SIEVE_EXEC_BIN_CORRUPT;
		}
		if (ret <= 0)
			return ret;
	}
	return SIEVE_EXEC_OK;
}

static int
tst_ratelimit_operation_execute(const struct sieve_runtime_env *renv,
				sieve_size_t *address)
{
	const struct loopguard_context *ctx = renv->oprtn->ext->context;
	struct tst_ratelimit_args args;
	struct loopguard_window_params params;
	struct loopguard_window_result result;
	const char *key, *handle, *thread_id;
	int ret;

	/*
	 * Read operands
	 */

	if ((ret = tst_ratelimit_read_operands(renv, address, &args)) <= 0)
		return ret;

	/*
	 * Perform operation
	 */

	sieve_runtime_trace(renv, SIEVE_TRLVL_TESTS, "ratelimit test");
	sieve_runtime_trace_descend(renv);

	/* A window of 0 seconds cannot be compiled any more; a binary that
	   has one is treated as :count 0 was always documented. */
	if (args.count == 0 || args.seconds == 0) {
		sieve_runtime_trace(renv, SIEVE_TRLVL_TESTS,
				    ":count 0 or :seconds 0: the test is off");
		sieve_interpreter_set_test_result(renv->interp, FALSE);
		return SIEVE_EXEC_OK;
	}

	if (args.key != NULL) {
		key = str_c(args.key);
	} else {
		key = ratelimit_key_default(loopguard_runtime_sender(renv),
					    tst_ratelimit_from_address(renv));
	}
	if (key == NULL || *key == '\0') {
		sieve_runtime_trace(renv, SIEVE_TRLVL_TESTS,
				    "message has no key: not counted");
		sieve_interpreter_set_test_result(renv->interp, FALSE);
		return SIEVE_EXEC_OK;
	}
	if (args.thread) {
		thread_id = ratelimit_key_thread(
			tst_ratelimit_header(renv, "References", FALSE),
			tst_ratelimit_header(renv, "In-Reply-To", FALSE),
			tst_ratelimit_header(renv, "Message-ID", FALSE),
			tst_ratelimit_header(renv, "Subject", TRUE));
		if (thread_id != NULL)
			key = ratelimit_key_with_thread(key, thread_id);
	}
	handle = args.handle == NULL ? "" : str_c(args.handle);
	/* Keys and handles come from messages: they are stored and shown
	   only sanitized and short. */
	key = loopguard_text_stored_name(key);
	handle = loopguard_text_stored_name(handle);

	i_zero(&params);
	params.count = loopguard_tag_clamp(args.count, ctx->set.max_count);
	params.period = loopguard_tag_clamp(args.seconds, ctx->set.max_period);
	params.lock = loopguard_tag_clamp(args.lock, ctx->set.max_period);

	ret = tst_ratelimit_check(renv, handle, key, &params, args.noupdate,
				  &result);
	if (ret != SIEVE_EXEC_OK)
		return ret;
	if (result.payload_ignored) {
		e_warning(renv->event, "ratelimit test: ignoring an unreadable "
			  "record of key '%s' (handle '%s'), counting afresh",
			  str_sanitize(key, LOOPGUARD_LOG_VALUE_MAX),
			  str_sanitize(handle, LOOPGUARD_LOG_VALUE_MAX));
	}

	sieve_runtime_trace(renv, SIEVE_TRLVL_TESTS,
		"key `%s': %u in window of %u seconds (limit %u)%s%s",
		key, result.count_in_window, params.period, params.count,
		result.locked_until != 0 ? ", locked" : "",
		result.already_counted ? ", counted before" : "");

	if (result.exceeded) {
		const struct loopguard_store_event event = {
			.test = "ratelimit",
			.handle = handle,
			.key = key,
			.reasons = "",
			.count = result.count_in_window,
			.window = params.period,
			.locked_until = result.locked_until,
		};

		loopguard_runtime_report(renv, &event);
	}

	sieve_interpreter_set_test_result(renv->interp, result.exceeded);
	return SIEVE_EXEC_OK;
}
