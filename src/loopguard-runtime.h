#ifndef LOOPGUARD_RUNTIME_H
#define LOOPGUARD_RUNTIME_H

/* What looptest and ratelimit share at run time: the extension context with
   the settings, the lazily opened store, state-error handling and the
   report of a firing test (log line, event, capped log). */

#include "loopguard-settings.h"
#include "loopguard-compat.h"
#include "loopguard-text.h"

/* Values from messages are logged and kept shortened to this. */
#define LOOPGUARD_LOG_VALUE_MAX LOOPGUARD_TEXT_MAX

struct sieve_extension;
struct sieve_runtime_env;
struct loopguard_store;
struct loopguard_store_delivery;
struct loopguard_store_event;
struct looptest_envelope;
struct looptest_result;

/* Shared by both extensions of one Sieve instance. */
struct loopguard_context {
	pool_t pool;
	unsigned int refcount;
	struct loopguard_settings set;
	const struct sieve_extension *var_ext;
	/* opened on first use, closed when the extension unloads */
	struct loopguard_store *store;
	/* The store transaction of the delivery whose result is
	   delivery_result: begun at its first use of the store, committed
	   when the result's actions have succeeded, aborted otherwise. */
	struct loopguard_store_delivery *delivery;
	const struct sieve_result *delivery_result;
	/* the Sieve instance's, for what is logged outside a test */
	struct event *event;
};

/* For an extension's load/unload callbacks. Loading fails when the
   settings cannot be read (Dovecot 2.4). */
LOOPGUARD_EXT_LOAD_RESULT
loopguard_context_load(const struct sieve_extension *ext, void **context);
void loopguard_context_unload(const struct sieve_extension *ext);

/* Returns SIEVE_EXEC_OK with *store_r set, or the result of
   loopguard_runtime_store_error() with *store_r NULL. The delivery's store
   transaction is open then: everything done on *store_r becomes durable,
   in one commit, only when the delivery has succeeded. */
int loopguard_runtime_get_store(const struct sieve_runtime_env *renv,
				const char *test,
				struct loopguard_store **store_r);

/* Handles a failure of the store, store_ret being what the store returned
   (-1, or LOOPGUARD_STORE_FULL). The user's script log gets a generic warning,
   the details go to the administrator's log. A full store is no transient
   error, so it is always handled like keep: SIEVE_EXEC_OK after the warning
   (the caller answers false). Any other error follows
   sieve_loopguard_on_error: keep as above, tempfail returns
   SIEVE_EXEC_TEMP_FAILURE. */
int loopguard_runtime_store_error(const struct sieve_runtime_env *renv,
				  const char *test, int store_ret,
				  const char *error);

/* Reports a test that fired: one log line, the sieve_loopguard_<test> event,
   and an entry in the user's capped log (a failure there only warns).
   fired holds what the test found; its time and message_id are not read,
   as they are the same for every test: now, and the message's Message-ID. */
void loopguard_runtime_report(const struct sieve_runtime_env *renv,
			      const struct loopguard_store_event *fired);

/* The user's addresses, lower-cased: envelope recipient, original
   recipient and sieve_user_email, plus extra (may be NULL). */
const char *const *
loopguard_runtime_user_addresses(const struct sieve_runtime_env *renv,
				 const char *const *extra);

/* The envelope sender: NULL when unknown, "" for the null sender. */
const char *loopguard_runtime_sender(const struct sieve_runtime_env *renv);

/* The Message-ID header, or "" when there is none. */
const char *loopguard_runtime_message_id(const struct sieve_runtime_env *renv);

/* Runs looptest_checks_evaluate() on the message being delivered. Returns
   SIEVE_EXEC_OK, or the failure to read the message. */
int loopguard_runtime_read_message(const struct sieve_runtime_env *renv,
				   const char *test,
				   const struct looptest_envelope *envelope,
				   unsigned int checks,
				   struct looptest_result *result_r);

#endif
