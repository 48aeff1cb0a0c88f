/* looptest's duplicate check against the user's store.

   A fingerprint is looked up and recorded in the delivery's store
   transaction, which commits only when the delivery has succeeded. So a
   delivery that fails, or a process that dies before it is done, never
   makes its retry a "duplicate" to be discarded: mail is not lost. Copies
   delivered at the same moment serialize on the store's writer lock, so
   all but the first are caught. */

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

/* Each sighting restarts the period, so a loop that keeps going keeps
   being caught. The payload is the time last seen, big-endian. */
struct looptest_duplicate_update {
	unsigned int period;
	struct event *event;
	bool duplicate;
};

static bool
looptest_duplicate_seen_update(const struct loopguard_db_record *old,
			       time_t now, buffer_t *new_payload,
			       time_t *expires_r, void *context)
{
	struct looptest_duplicate_update *upd = context;
	uint64_t last_seen;

	upd->duplicate = FALSE;
	if (old != NULL && old->payload_size == sizeof(uint64_t)) {
		/* unsigned: a time read from the file cannot overflow */
		last_seen = be64_to_cpu_unaligned(old->payload);
		upd->duplicate = last_seen + upd->period > (uint64_t)now;
	} else if (old != NULL) {
		e_warning(upd->event, "looptest: ignoring a fingerprint "
			  "record of %zu bytes", old->payload_size);
	}
	cpu64_to_be_unaligned((uint64_t)now,
		buffer_append_space_unsafe(new_payload, sizeof(uint64_t)));
	*expires_r = now + upd->period;
	if (old != NULL && old->expires > *expires_r)
		*expires_r = old->expires;
	return TRUE;
}

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

/* Looks the fingerprint up and records this sighting in one step, in the
   delivery's store transaction: the sighting becomes durable only when
   the delivery has succeeded, and a copy delivered at the same moment
   waits for this delivery to end and then finds it. */
static int
looptest_duplicate_lookup(const struct sieve_runtime_env *renv,
			  const char *key, unsigned int period,
			  bool *duplicate_r)
{
	struct looptest_duplicate_update upd;
	struct loopguard_db *db;
	const char *error;
	int ret;

	*duplicate_r = FALSE;
	if ((ret = loopguard_runtime_get_db(renv, "looptest",
					    &db)) != SIEVE_EXEC_OK ||
	    db == NULL)
		return ret;

	i_zero(&upd);
	upd.period = period;
	upd.event = renv->event;
	ret = loopguard_db_update(db, LOOPGUARD_DB_KIND_SEEN, "", key,
				  time(NULL), looptest_duplicate_seen_update,
				  &upd, &error);
	if (ret < 0)
		return loopguard_runtime_store_error(renv, "looptest", ret,
						     error);
	*duplicate_r = upd.duplicate;
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

	seen = array_append_space(&dctx->seen);
	memcpy(seen->fingerprint, fingerprint, LOOPTEST_FINGERPRINT_SIZE);
	seen->duplicate = duplicate;
	*duplicate_r = duplicate;
	return SIEVE_EXEC_OK;
}
