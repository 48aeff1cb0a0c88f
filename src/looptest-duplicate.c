/* looptest's duplicate check against the user's store.

   A fingerprint is only looked up while the script runs; it is remembered
   when the delivery has succeeded, as Pigeonhole's own duplicate test does.
   So a delivery that fails, or a process that dies before it is done, never
   makes its retry a "duplicate" to be discarded: mail is not lost. The price
   is that copies delivered at the very same moment may all get through;
   loops arrive one after another and are caught. */

#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "byteorder.h"
#include "hex-binary.h"

#include <time.h>

#include "sieve-common.h"
#include "sieve-extensions.h"
#include "sieve-code.h"
#include "sieve-actions.h"
#include "sieve-result.h"
#include "sieve-runtime.h"

#include "loopguard-db.h"
#include "loopguard-runtime.h"
#include "looptest-duplicate.h"

/* The fingerprints this delivery has checked. Kept with the result, which
   all scripts of one delivery share and which outlives the message
   substitution of vnd.dovecot.filter: testing again never finds the
   delivery's own sighting. */
struct looptest_duplicate_seen {
	unsigned char fingerprint[LOOPTEST_FINGERPRINT_SIZE];
	bool duplicate;
};

struct looptest_duplicate_context {
	ARRAY(struct looptest_duplicate_seen) seen;
};

/*
 * Remember action
 */

struct act_looptest_remember_data {
	const char *key;
	unsigned int period;
};

static void
act_looptest_remember_print(const struct sieve_action *action,
			    const struct sieve_result_print_env *rpenv,
			    bool *keep ATTR_UNUSED)
{
	const struct act_looptest_remember_data *data = action->context;

	sieve_result_action_printf(rpenv,
		"remember looptest fingerprint %.16s for %u seconds",
		data->key, data->period);
}

/* Each sighting restarts the period, so a loop that keeps going keeps
   being caught. The payload is the time last seen, big-endian. */
static bool
looptest_duplicate_seen_update(const struct loopguard_db_record *old,
			       time_t now, buffer_t *new_payload,
			       time_t *expires_r, void *context)
{
	const struct act_looptest_remember_data *data = context;

	cpu64_to_be_unaligned((uint64_t)now,
		buffer_append_space_unsafe(new_payload, sizeof(uint64_t)));
	*expires_r = now + data->period;
	if (old != NULL && old->expires > *expires_r)
		*expires_r = old->expires;
	return TRUE;
}

static void
act_looptest_remember_finish(const struct sieve_action_exec_env *aenv,
			     void *tr_context ATTR_UNUSED, int status)
{
	const struct act_looptest_remember_data *data = aenv->action->context;
	const struct loopguard_context *ctx = aenv->action->ext->context;
	const char *error;

	if (status != SIEVE_EXEC_OK || ctx->db == NULL)
		return;
	if (loopguard_db_update(ctx->db, LOOPGUARD_DB_KIND_SEEN, "",
				data->key, time(NULL),
				looptest_duplicate_seen_update,
				(void *)data, &error) < 0) {
		e_warning(aenv->event, "looptest: failed to remember the "
			  "message's fingerprint: %s", error);
	}
}

static const struct sieve_action_def act_looptest_remember = {
	.name = "looptest_remember",
	.print = act_looptest_remember_print,
	.finish = act_looptest_remember_finish,
};

/*
 * Check
 */

static struct looptest_duplicate_context *
looptest_duplicate_context_get(const struct sieve_runtime_env *renv)
{
	const struct sieve_extension *ext = renv->oprtn->ext;
	struct looptest_duplicate_context *dctx;
	pool_t pool;

	dctx = (struct looptest_duplicate_context *)
		sieve_result_extension_get_context(renv->result, ext);
	if (dctx == NULL) {
		pool = sieve_result_pool(renv->result);
		dctx = p_new(pool, struct looptest_duplicate_context, 1);
		p_array_init(&dctx->seen, pool, 2);
		sieve_result_extension_set_context(renv->result, ext, dctx);
	}
	return dctx;
}

static int
looptest_duplicate_lookup(const struct sieve_runtime_env *renv,
			  const char *key, unsigned int period,
			  bool *duplicate_r)
{
	struct loopguard_db_record record;
	struct loopguard_db *db;
	const char *error;
	time_t now = time(NULL);
	uint64_t last_seen;
	pool_t pool;
	int ret;

	*duplicate_r = FALSE;
	if ((ret = loopguard_runtime_get_db(renv, "looptest",
					    &db)) != SIEVE_EXEC_OK ||
	    db == NULL)
		return ret;

	pool = pool_alloconly_create("looptest duplicate", 256);
	ret = loopguard_db_lookup(db, LOOPGUARD_DB_KIND_SEEN, "", key, now,
				  pool, &record, &error);
	if (ret > 0 && record.payload_size == sizeof(uint64_t)) {
		/* unsigned: a time read from the file cannot overflow */
		last_seen = be64_to_cpu_unaligned(record.payload);
		*duplicate_r = last_seen + period > (uint64_t)now;
	} else if (ret > 0) {
		e_warning(renv->event, "looptest: ignoring a fingerprint "
			  "record of %zu bytes", record.payload_size);
	}
	pool_unref(&pool);
	if (ret < 0)
		return loopguard_runtime_store_error(renv, "looptest", ret,
						     error);
	return SIEVE_EXEC_OK;
}

int looptest_duplicate_check(const struct sieve_runtime_env *renv,
			     const unsigned char fingerprint[
				     LOOPTEST_FINGERPRINT_SIZE],
			     unsigned int period, bool *duplicate_r)
{
	struct looptest_duplicate_context *dctx =
		looptest_duplicate_context_get(renv);
	struct act_looptest_remember_data *act;
	struct looptest_duplicate_seen *seen;
	pool_t pool = sieve_result_pool(renv->result);
	const char *key;
	bool duplicate;
	int ret;

	*duplicate_r = FALSE;
	array_foreach_modifiable(&dctx->seen, seen) {
		if (memcmp(seen->fingerprint, fingerprint,
			   LOOPTEST_FINGERPRINT_SIZE) == 0) {
			*duplicate_r = seen->duplicate;
			return SIEVE_EXEC_OK;
		}
	}

	key = binary_to_hex(fingerprint, LOOPTEST_FINGERPRINT_SIZE);
	ret = looptest_duplicate_lookup(renv, key, period, &duplicate);
	if (ret != SIEVE_EXEC_OK)
		return ret;

	act = p_new(pool, struct act_looptest_remember_data, 1);
	act->key = p_strdup(pool, key);
	act->period = period;
	if (sieve_result_add_action(renv, renv->oprtn->ext, NULL,
				    &act_looptest_remember, NULL, act,
				    0, FALSE) < 0)
		return SIEVE_EXEC_FAILURE;

	seen = array_append_space(&dctx->seen);
	memcpy(seen->fingerprint, fingerprint, LOOPTEST_FINGERPRINT_SIZE);
	seen->duplicate = duplicate;
	*duplicate_r = duplicate;
	return SIEVE_EXEC_OK;
}
