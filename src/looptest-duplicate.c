/* looptest's duplicate check against the user's store.

   A fingerprint is looked up and recorded in the delivery's store
   transaction, which commits only when the delivery has succeeded. So a
   delivery that fails, or a process that dies before it is done, never
   makes its retry a "duplicate" to be discarded: mail is not lost. Copies
   delivered at the same moment serialize on the store's writer lock, so
   all but the first are caught. */

#include "lib.h"
#include "array.h"

#include <time.h>

#include "sieve-common.h"
#include "sieve-extensions.h"
#include "sieve-code.h"
#include "sieve-actions.h"
#include "sieve-result.h"
#include "sieve-runtime.h"

#include "loopguard-store.h"
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

/* The store keeps fingerprints of the same size. */
#if LOOPTEST_FINGERPRINT_SIZE != LOOPGUARD_STORE_FINGERPRINT_SIZE
#  error "LOOPTEST_FINGERPRINT_SIZE differs from the store's"
#endif

/* Looks the fingerprint up and records this sighting in one step, in the
   delivery's store transaction: the sighting becomes durable only when
   the delivery has succeeded, and a copy delivered at the same moment
   waits for this delivery to end and then finds it. Each sighting
   restarts the period, so a loop that keeps going keeps being caught. */
static int
looptest_duplicate_lookup(const struct sieve_runtime_env *renv,
			  const unsigned char fingerprint[
				  LOOPTEST_FINGERPRINT_SIZE],
			  unsigned int period, bool *duplicate_r)
{
	struct loopguard_store *store;
	const char *error;
	int ret;

	*duplicate_r = FALSE;
	if ((ret = loopguard_runtime_get_store(renv, "looptest",
					       &store)) != SIEVE_EXEC_OK ||
	    store == NULL)
		return ret;

	ret = loopguard_store_fingerprint_check(store, fingerprint, period,
						time(NULL), duplicate_r,
						&error);
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
	struct looptest_duplicate_seen *seen;
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

	ret = looptest_duplicate_lookup(renv, fingerprint, period,
					&duplicate);
	if (ret != SIEVE_EXEC_OK)
		return ret;

	seen = array_append_space(&dctx->seen);
	memcpy(seen->fingerprint, fingerprint, LOOPTEST_FINGERPRINT_SIZE);
	seen->duplicate = duplicate;
	*duplicate_r = duplicate;
	return SIEVE_EXEC_OK;
}
