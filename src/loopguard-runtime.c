/* Run-time support shared by looptest and ratelimit. */

#include "lib.h"
#include <time.h>
#include "array.h"
#include "str.h"
#include "str-sanitize.h"
#include "time-util.h"
#include "smtp-address.h"
#include "smtp-params.h"
#include "istream.h"
#include "mail-storage.h"

#include "sieve-common.h"
#include "sieve-extensions.h"
#include "sieve-settings.h"
#include "sieve-interpreter.h"
#include "sieve-runtime.h"
#include "sieve-execute.h"
#include "sieve-actions.h"
#include "sieve-result.h"
#include "sieve-message.h"
#include "sieve-ext-variables.h"

#include "loopguard-compat.h"
#include "loopguard-store.h"
#include "loopguard-path.h"
#include "looptest-checks.h"
#include "loopguard-text.h"
#include "loopguard-runtime.h"

/* Every extension loaded by loopguard_context_load() shares one context,
   so that the settings are read, and their warnings logged, once per
   Sieve instance. They are found by that, not by name: a new test shares
   the context by using the same load callback. */
static struct loopguard_context *
loopguard_context_find_shared(const struct sieve_extension *ext)
{
	const struct sieve_extension *const *exts;
	unsigned int i, count;

	exts = sieve_extensions_get_all(ext->svinst, &count);
	for (i = 0; i < count; i++) {
		if (exts[i] != ext && exts[i]->def != NULL &&
		    exts[i]->def->load == loopguard_context_load &&
		    exts[i]->context != NULL)
			return exts[i]->context;
	}
	return NULL;
}

static int
loopguard_context_read_settings(struct sieve_instance *svinst,
				struct loopguard_context *ctx)
{
	const char *error;

	if (loopguard_sieve_settings_read(svinst, ctx->pool, &ctx->set,
					  &error) < 0) {
		e_error(svinst->event, "loopguard: %s", error);
		return -1;
	}
	return 0;
}

LOOPGUARD_EXT_LOAD_RESULT
loopguard_context_load(const struct sieve_extension *ext, void **context)
{
	struct sieve_instance *svinst = ext->svinst;
	struct loopguard_context *ctx;
	pool_t pool;

	if (*context != NULL) {
		/* Loaded again: keep the store, refresh the settings. */
		ctx = *context;
		if (loopguard_context_read_settings(svinst, ctx) < 0)
			return LOOPGUARD_EXT_LOAD_FAILED;
		return LOOPGUARD_EXT_LOAD_OK;
	}
	if ((ctx = loopguard_context_find_shared(ext)) != NULL) {
		ctx->refcount++;
		*context = ctx;
		return LOOPGUARD_EXT_LOAD_OK;
	}

	pool = pool_alloconly_create("loopguard context", 1024);
	ctx = p_new(pool, struct loopguard_context, 1);
	ctx->pool = pool;
	ctx->refcount = 1;
	if (loopguard_context_read_settings(svinst, ctx) < 0) {
		pool_unref(&pool);
		return LOOPGUARD_EXT_LOAD_FAILED;
	}
	ctx->var_ext = loopguard_variables_extension(svinst);
	ctx->event = svinst->event;
	*context = ctx;
	return LOOPGUARD_EXT_LOAD_OK;
}

void loopguard_context_unload(const struct sieve_extension *ext)
{
	struct loopguard_context *ctx = ext->context;

	if (ctx == NULL)
		return;
	i_assert(ctx->refcount > 0);
	if (--ctx->refcount > 0)
		return;
	/* a result that was never executed (sieve-test without -e, a
	   failure before the actions) ends here, without its changes */
	loopguard_store_delivery_abort(&ctx->delivery);
	loopguard_store_close(&ctx->store);
	pool_unref(&ctx->pool);
}

static struct loopguard_context *
loopguard_runtime_context(const struct sieve_runtime_env *renv)
{
	struct loopguard_context *ctx = renv->oprtn->ext->context;

	i_assert(ctx != NULL);
	return ctx;
}

int loopguard_runtime_store_error(const struct sieve_runtime_env *renv,
				  const char *test, int store_ret,
				  const char *error)
{
	const struct loopguard_context *ctx = loopguard_runtime_context(renv);

	if (store_ret == LOOPGUARD_STORE_FULL) {
		/* Deferring would not help: the records are all live, so
		   the retry would find the store just as full. */
		e_warning(renv->event, "%s test: loopguard state is full, "
			  "test is false (sieve_loopguard_db_max_size is too "
			  "small for this user): %s", test, error);
	} else if (ctx->set.on_error == LOOPGUARD_ON_ERROR_TEMPFAIL) {
		sieve_runtime_critical(renv, NULL,
			t_strdup_printf("%s test: temporary failure", test),
			"%s test: loopguard state error (delivery deferred): %s",
			test, error);
		return SIEVE_EXEC_TEMP_FAILURE;
	} else {
		e_warning(renv->event, "%s test: loopguard state unavailable, "
			  "test is false: %s", test, error);
	}
	/* The path and the store's error are not the user's business. */
	sieve_runtime_warning(renv, NULL,
		"%s test: loopguard state unavailable, test is false", test);
	return SIEVE_EXEC_OK;
}

/*
 * The delivery's store transaction
 */

static void
loopguard_delivery_end(struct loopguard_context *ctx, bool success,
		       struct event *event)
{
	const char *error;

	ctx->delivery_result = NULL;
	if (ctx->delivery == NULL)
		return;
	if (!success)
		loopguard_store_delivery_abort(&ctx->delivery);
	else if (loopguard_store_delivery_commit(&ctx->delivery, &error) < 0) {
		/* The mail is delivered; only its state is lost. */
		e_warning(event, "loopguard: failed to record the "
			  "delivery's state: %s", error);
	}
}

/* Prints, in sieve-test without -e, the result that is not executed: its
   simulated delivery, which commits like a real one so that repeated
   runs see each other's state. */
static void
act_loopguard_commit_print(const struct sieve_action *action,
			   const struct sieve_result_print_env *rpenv,
			   bool *keep ATTR_UNUSED)
{
	struct loopguard_context *ctx = action->context;

	sieve_result_action_printf(rpenv, "record loopguard state");
	loopguard_delivery_end(ctx, TRUE, ctx->event);
}

/* Runs once all actions of all scripts of the delivery have been
   committed (or failed): status tells whether the delivery succeeded. */
static void
act_loopguard_commit_finish(const struct sieve_action_exec_env *aenv,
			    void *tr_context ATTR_UNUSED, int status)
{
	struct loopguard_context *ctx = aenv->action->context;

	if (ctx->delivery_result != aenv->result)
		return;
	loopguard_delivery_end(ctx, status == SIEVE_EXEC_OK, aenv->event);
}

static const struct sieve_action_def act_loopguard_commit = {
	.name = "loopguard_commit",
	.print = act_loopguard_commit_print,
	.finish = act_loopguard_commit_finish,
};

/* Begins the delivery's store transaction at its first use of the store.
   All scripts of a delivery share its result, so one transaction spans
   sieve_before, the user's script and sieve_after. */
static int
loopguard_delivery_begin(const struct sieve_runtime_env *renv,
			 struct loopguard_context *ctx, const char **error_r)
{
	if (ctx->delivery != NULL && ctx->delivery_result == renv->result)
		return 0;
	/* left by a result that was never executed */
	loopguard_store_delivery_abort(&ctx->delivery);
	if (loopguard_store_delivery_begin(ctx->store, &ctx->delivery,
					   error_r) < 0)
		return -1;
	ctx->delivery_result = renv->result;
	if (sieve_result_add_action(renv, renv->oprtn->ext, NULL,
				    &act_loopguard_commit, NULL, ctx,
				    0, FALSE) < 0) {
		loopguard_delivery_end(ctx, FALSE, renv->event);
		*error_r = "failed to add the action that records the state";
		return -1;
	}
	return 0;
}

static int
loopguard_runtime_open_store(const struct sieve_runtime_env *renv,
			     struct loopguard_store **store_r,
			     const char **error_r)
{
	struct sieve_instance *svinst = renv->exec_env->svinst;
	struct loopguard_context *ctx = loopguard_runtime_context(renv);
	struct loopguard_store_settings store_set;
	const char *location;

	if (ctx->store == NULL) {
		if (loopguard_path_resolve(ctx->set.db_path,
				sieve_environment_get_homedir(svinst),
				&location, error_r) < 0)
			return -1;

		i_zero(&store_set);
		store_set.location = location;
		store_set.username = svinst->username;
		store_set.max_size = ctx->set.db_max_size;
		store_set.sync = ctx->set.sync;
		store_set.allow_network_fs = ctx->set.db_allow_network_fs;
		store_set.log_size = ctx->set.log_size;
		/* the store lives as long as the Sieve instance */
		store_set.event = ctx->event;
		if (loopguard_store_open(&store_set, &ctx->store,
					 error_r) < 0)
			return -1;
	}
	if (loopguard_delivery_begin(renv, ctx, error_r) < 0)
		return -1;
	*store_r = ctx->store;
	return 0;
}

int loopguard_runtime_get_store(const struct sieve_runtime_env *renv,
				const char *test,
				struct loopguard_store **store_r)
{
	const char *error;

	if (loopguard_runtime_open_store(renv, store_r, &error) < 0) {
		*store_r = NULL;
		return loopguard_runtime_store_error(renv, test, -1, error);
	}
	return SIEVE_EXEC_OK;
}

/* Each fired check also goes into the string list "check": a metric's
   group_by counts every element of a list in a sub-metric of its own, so
   a firing for "marker duplicate" counts once under each check. */
static void
loopguard_runtime_add_checks(struct event *event, const char *reasons)
{
	const char *const *checks;

	for (checks = t_strsplit_spaces(reasons, " "); *checks != NULL;
	     checks++)
		event_strlist_append(event, "check", *checks);
}

void loopguard_runtime_report(const struct sieve_runtime_env *renv,
			      const struct loopguard_store_event *fired)
{
	struct sieve_instance *svinst = renv->exec_env->svinst;
	struct loopguard_store_event lg_event = *fired;
	struct loopguard_store *store;
	struct event *event;
	const char *error, *handle, *key, *message_id;

	lg_event.time = time(NULL);
	lg_event.message_id = loopguard_runtime_message_id(renv);

	/* Sanitized and capped before anything keeps them: the capped log
	   is read on an administrator's terminal. */
	handle = loopguard_text_sanitize(lg_event.handle,
					 LOOPGUARD_LOG_VALUE_MAX);
	key = loopguard_text_sanitize(lg_event.key, LOOPGUARD_LOG_VALUE_MAX);
	message_id = loopguard_text_sanitize(lg_event.message_id,
					     LOOPGUARD_LOG_VALUE_MAX);
	lg_event.handle = handle;
	lg_event.key = key;
	lg_event.message_id = message_id;

	event = event_create(renv->event);
	event_set_name(event, t_strconcat("sieve_loopguard_",
					  lg_event.test, NULL));
	event_add_str(event, "user", svinst->username);
	event_add_str(event, "test", lg_event.test);
	event_add_str(event, "handle", handle);
	event_add_str(event, "key", key);
	event_add_str(event, "reasons", lg_event.reasons);
	loopguard_runtime_add_checks(event, lg_event.reasons);
	event_add_str(event, "message_id", message_id);
	event_add_int(event, "count", lg_event.count);
	event_add_int(event, "window", lg_event.window);
	event_add_int(event, "locked_until", lg_event.locked_until);

	e_info(event, "loopguard: %s fired: user=%s, handle=%s, key=%s, "
	       "reasons=%s, message-id=%s, count=%u, window=%us, "
	       "locked-until=%s", lg_event.test,
	       svinst->username == NULL ? "" : svinst->username,
	       handle, key, lg_event.reasons, message_id,
	       lg_event.count, lg_event.window,
	       lg_event.locked_until == 0 ? "-" :
	       t_strflocaltime("%Y-%m-%d %H:%M:%S",
			       lg_event.locked_until));
	event_unref(&event);

	/* The log is for the administrator's eyes; failing to keep it must
	   not change what happens to the message. */
	if (loopguard_runtime_open_store(renv, &store, &error) < 0 ||
	    loopguard_store_log_append(store, &lg_event, &error) < 0) {
		e_warning(renv->event, "loopguard: failed to keep the event "
			  "in the user's log: %s", error);
	}
}

static void
loopguard_address_add(ARRAY_TYPE(const_string) *addresses,
		      const char *address)
{
	const char *lower;

	if (address == NULL || *address == '\0')
		return;
	lower = t_str_lcase(address);
	if (!array_lsearch(addresses, &lower, i_strcmp_p))
		array_push_back(addresses, &lower);
}

const char *const *
loopguard_runtime_user_addresses(const struct sieve_runtime_env *renv,
				 const char *const *extra)
{
	const struct sieve_execute_env *eenv = renv->exec_env;
	const struct sieve_message_data *msgdata = eenv->msgdata;
	const struct smtp_address *user_email;
	ARRAY_TYPE(const_string) addresses;

	t_array_init(&addresses, 8);
	if (!smtp_address_isnull(msgdata->envelope.rcpt_to)) {
		loopguard_address_add(&addresses,
			smtp_address_encode(msgdata->envelope.rcpt_to));
	}
	if (msgdata->envelope.rcpt_params != NULL &&
	    !smtp_address_isnull(msgdata->envelope.rcpt_params->orcpt.addr)) {
		loopguard_address_add(&addresses, smtp_address_encode(
			msgdata->envelope.rcpt_params->orcpt.addr));
	}
	user_email = sieve_get_user_email(eenv->svinst);
	if (!smtp_address_isnull(user_email)) {
		loopguard_address_add(&addresses,
				      smtp_address_encode(user_email));
	}
	for (; extra != NULL && *extra != NULL; extra++)
		loopguard_address_add(&addresses, *extra);
	array_append_zero(&addresses);
	return array_front(&addresses);
}

const char *loopguard_runtime_sender(const struct sieve_runtime_env *renv)
{
	const struct smtp_address *sender =
		renv->exec_env->msgdata->envelope.mail_from;

	if (sender == NULL)
		return NULL;
	if (smtp_address_isnull(sender))
		return "";
	return t_str_lcase(smtp_address_encode(sender));
}

const char *loopguard_runtime_message_id(const struct sieve_runtime_env *renv)
{
	struct mail *mail = sieve_message_get_mail(renv->msgctx);
	const char *message_id;

	if (mail_get_message_id(mail, &message_id) <= 0 || message_id == NULL)
		return "";
	return message_id;
}

int loopguard_runtime_read_message(const struct sieve_runtime_env *renv,
				   const char *test,
				   const struct looptest_envelope *envelope,
				   unsigned int checks,
				   struct looptest_result *result_r)
{
	struct mail *mail = sieve_message_get_mail(renv->msgctx);
	struct istream *input, *message_input;
	const char *error;
	int ret;

	if (mail_get_stream(mail, NULL, NULL, &input) < 0) {
		return sieve_runtime_mail_error(renv, mail,
			"%s test: failed to read the message", test);
	}
	/* Our own read offset: other tests share the mail's stream. */
	message_input = i_stream_create_limit(input, UOFF_T_MAX);
	ret = looptest_checks_evaluate(message_input, envelope, checks,
				       result_r, &error);
	i_stream_unref(&message_input);
	if (ret < 0) {
		sieve_runtime_critical(renv, NULL,
			t_strdup_printf("%s test: failed to read the message",
					test),
			"%s test: failed to read the message: %s",
			test, error);
		return SIEVE_EXEC_TEMP_FAILURE;
	}
	return SIEVE_EXEC_OK;
}
