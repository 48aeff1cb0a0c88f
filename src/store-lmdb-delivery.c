/* The LMDB driver's delivery: every change of one delivery goes into one
   write transaction, committed once after the delivery's actions ran. */

#include "lib.h"

#include "store-lmdb-private.h"

#include <unistd.h>

/* Pages kept free in the map for the delivery's commit: LMDB saves the
   pages the transaction freed into its free list only then, and that takes
   pages of its own. A commit that fails on MDB_MAP_FULL loses every change
   of the delivery, so a change that would leave less room than this is
   refused as the store being full while the delivery is still running. */
#define STORE_LMDB_COMMIT_RESERVE_PAGES 8
#define STORE_LMDB_META_COMMIT_RESERVE "commit-reserve"

/* Tries to take the commit's reserve in a transaction nested in txn and
   gives it back: returns 0 when there is room, MDB_MAP_FULL when not. An
   aborted nested transaction leaves its parent's pages as they were. */
static int
store_lmdb_commit_reserve_check(struct store_lmdb_env *env, MDB_txn *txn,
				const char **func_r)
{
	MDB_txn *probe;
	MDB_val k, v;
	int rc;

	*func_r = "mdb_txn_begin";
	if ((rc = mdb_txn_begin(env->env, txn, 0, &probe)) != 0)
		return rc;
	k.mv_data = STORE_LMDB_META_COMMIT_RESERVE;
	k.mv_size = strlen(STORE_LMDB_META_COMMIT_RESERVE);
	v.mv_data = NULL;
	v.mv_size = STORE_LMDB_COMMIT_RESERVE_PAGES *
		store_lmdb_page_size();
	*func_r = "mdb_put";
	rc = mdb_put(probe, env->meta_dbi, &k, &v, MDB_RESERVE);
	mdb_txn_abort(probe);
	return rc;
}

/* Free pages a delivery may take without growing the map. */
#define STORE_LMDB_DELIVERY_HEADROOM_PAGES 128
/* Transactions begun and given up to grow the map first. */
#define STORE_LMDB_DELIVERY_GROW_RETRIES 2

/* Whether the map has fewer free pages after the last one in use than a
   delivery may take, and may still grow. */
static bool store_lmdb_delivery_cramped(struct store_lmdb_env *env)
{
	MDB_envinfo info;
	size_t used, page_size = store_lmdb_page_size();

	if (mdb_env_info(env->env, &info) != 0 ||
	    info.me_mapsize >= env->soft_map_size)
		return FALSE;
	used = (info.me_last_pgno + 1) * page_size;
	return used + STORE_LMDB_DELIVERY_HEADROOM_PAGES * page_size >
		info.me_mapsize;
}

/* LMDB copies every page it changes, and the map cannot grow while the
   delivery's transaction is open: when it is nearly full, the transaction
   is given up, the map grown and the transaction begun again. The room is
   judged under the writer lock, once the transaction has begun: the
   deliveries that held the lock while this one waited for it have used
   what room there was before. */
static int
store_lmdb_delivery_txn_begin(struct store_lmdb_env *env, MDB_txn **txn_r)
{
	unsigned int i;
	int rc;

	for (i = 0;; i++) {
		if ((rc = store_lmdb_txn_begin(env, TRUE, txn_r)) != 0 ||
		    i == STORE_LMDB_DELIVERY_GROW_RETRIES ||
		    !store_lmdb_delivery_cramped(env))
			return rc;
		mdb_txn_abort(*txn_r);
		(void)store_lmdb_grow(env);
	}
}

/* One change inside the delivery's transaction, as a nested transaction,
   so that a change that fails is undone alone and the delivery's earlier
   changes stay. The map cannot grow while a transaction is open: on
   MDB_MAP_FULL before the delivery changed anything, its transaction is
   begun afresh after making room; after that, the change fails and the
   map grows once the delivery's transaction has ended. */
int store_lmdb_delivery_write(struct store_lmdb *store, time_t now,
			      store_lmdb_txn_func_t *func, void *context,
			      const char **error_r)
{
	struct store_lmdb_env *env = store->env;
	struct store_lmdb_delivery *delivery = env->delivery;
	const char *func_name = "mdb_txn_begin";
	bool retried = FALSE;
	MDB_txn *txn;
	int rc;

	for (;;) {
		if (delivery->txn == NULL) {
			*error_r = t_strdup_printf(
				"loopguard store %s: the delivery's transaction "
				"ended after an error", env->path);
			return -1;
		}
		rc = mdb_txn_begin(env->env, delivery->txn, 0, &txn);
		if (rc == 0) {
			rc = func(store, txn, context, &func_name);
			if (rc == 0) {
				rc = store_lmdb_commit_reserve_check(
					env, txn, &func_name);
			}
			if (rc != 0)
				mdb_txn_abort(txn);
			else {
				func_name = "mdb_txn_commit";
				rc = mdb_txn_commit(txn);
			}
		}
		if (rc == 0) {
			delivery->written = TRUE;
			return 0;
		}
		/* One search for room per delivery: a second one (for its
		   next change, its log entry) would double what a full
		   store costs a delivery; the next delivery goes on where
		   this one's stopped. */
		if (rc != MDB_MAP_FULL || delivery->written || retried ||
		    delivery->room_searched)
			break;
		retried = TRUE;
		delivery->room_searched = TRUE;
		mdb_txn_abort(delivery->txn);
		delivery->txn = NULL;
		rc = store_lmdb_make_room(store, now, &func_name);
		if (rc != 0 && rc != MDB_MAP_FULL)
			break;
		func_name = "mdb_txn_begin";
		rc = store_lmdb_delivery_txn_begin(env, &delivery->txn);
		if (rc != 0) {
			delivery->txn = NULL;
			break;
		}
	}
	if (rc == MDB_MAP_FULL) {
		delivery->grow = TRUE;
		return store_lmdb_map_full_error(store, func_name,
			delivery->written ?
			"; the map grows after this delivery" : "", error_r);
	}
	*error_r = store_lmdb_failed(env, func_name, rc);
	return -1;
}

int store_lmdb_delivery_begin(struct loopguard_store *_store,
			      const char **error_r)
{
	struct store_lmdb *store = store_lmdb_cast(_store);
	struct store_lmdb_env *env = store->env;
	struct store_lmdb_delivery *delivery;
	MDB_txn *txn;
	int rc;

	if (store_lmdb_check(store, error_r) < 0)
		return -1;
	if (env->delivery != NULL) {
		/* LMDB's writer lock is not recursive: this would wait for
		   itself for ever */
		*error_r = t_strdup_printf(
			"loopguard store %s: a delivery transaction is already "
			"open in this process", env->path);
		return -1;
	}
	if ((rc = store_lmdb_delivery_txn_begin(env, &txn)) != 0) {
		*error_r = store_lmdb_failed(env, "mdb_txn_begin", rc);
		return -1;
	}
	delivery = i_new(struct store_lmdb_delivery, 1);
	delivery->store = store;
	delivery->txn = txn;
	env->delivery = delivery;
	return 0;
}

static void store_lmdb_delivery_end(struct store_lmdb_env *env)
{
	struct store_lmdb_delivery *delivery = env->delivery;

	env->delivery = NULL;
	/* no transaction of this process is open now */
	if (delivery->grow && !env->broken)
		(void)store_lmdb_grow(env);
	i_free(delivery);
}

int store_lmdb_delivery_commit(struct loopguard_store *_store,
			       const char **error_r)
{
	struct store_lmdb *store = store_lmdb_cast(_store);
	struct store_lmdb_env *env = store->env;
	struct store_lmdb_delivery *delivery = env->delivery;
	MDB_txn *txn;
	int rc, ret = 0;

	i_assert(delivery != NULL && delivery->store == store);
	if (env->pid != getpid()) {
		/* the parent's: only the parent may end it */
		*error_r = t_strdup_printf("loopguard store %s: delivery "
			"transaction of the parent used after fork()",
			env->path);
		return -1;
	}
	txn = delivery->txn;
	delivery->txn = NULL;
	if (txn == NULL) {
		*error_r = t_strdup_printf("loopguard store %s: the delivery's "
			"transaction ended after an error", env->path);
		ret = -1;
	} else if (!delivery->written) {
		/* nothing changed: no commit, no flush */
		mdb_txn_abort(txn);
	} else if ((rc = store_lmdb_txn_commit(env, txn)) != 0) {
		/* a failed commit frees the transaction too */
		if (rc == MDB_MAP_FULL)
			delivery->grow = TRUE;
		*error_r = store_lmdb_failed(env, "mdb_txn_commit", rc);
		ret = -1;
	}
	store_lmdb_delivery_end(env);
	return ret;
}

void store_lmdb_delivery_abort(struct loopguard_store *_store)
{
	struct store_lmdb *store = store_lmdb_cast(_store);
	struct store_lmdb_env *env = store->env;
	struct store_lmdb_delivery *delivery = env->delivery;

	i_assert(delivery != NULL && delivery->store == store);
	if (env->pid != getpid()) {
		/* the parent's: only the parent may end it */
		return;
	}
	if (delivery->txn != NULL)
		mdb_txn_abort(delivery->txn);
	delivery->txn = NULL;
	store_lmdb_delivery_end(env);
}
