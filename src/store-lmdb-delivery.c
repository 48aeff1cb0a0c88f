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

static unsigned int store_lmdb_room_checks = 0;

unsigned int store_lmdb_delivery_room_checks(void)
{
	return store_lmdb_room_checks;
}

/* Free pages after the last one in use, as of the last commit: while this
   process holds the writer lock, the room its transaction began with.
   Pages freed earlier only add to it. */
static size_t
store_lmdb_end_room_pages(struct store_lmdb_env *env, size_t *map_size_r)
{
	MDB_envinfo info;
	size_t pages;

	if (mdb_env_info(env->env, &info) != 0) {
		*map_size_r = 0;
		return 0;
	}
	*map_size_r = info.me_mapsize;
	pages = info.me_mapsize / store_lmdb_page_size();
	return pages > info.me_last_pgno + 1 ?
		pages - (info.me_last_pgno + 1) : 0;
}

/* Whether the map has fewer free pages after the last one in use than a
   delivery may take, and may still grow. */
static bool store_lmdb_delivery_cramped(struct store_lmdb_env *env)
{
	size_t map_size, room = store_lmdb_end_room_pages(env, &map_size);

	return map_size < env->soft_map_size &&
		room < STORE_LMDB_DELIVERY_HEADROOM_PAGES;
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

static void store_lmdb_delivery_txn_began(struct store_lmdb_delivery *delivery)
{
	size_t map_size;

	delivery->room_pages =
		store_lmdb_end_room_pages(delivery->store->env, &map_size);
	delivery->changes_pages = 0;
	delivery->uncounted = FALSE;
}

/* Page counting. LMDB copies a page the first time a transaction changes
   it. Writing or deleting one record copies the pages on its path from
   the root (depth pages); a write may split a page on every level and add
   a root (depth + 1 new pages), a deletion may merge a page with its
   neighbour on every level (depth pages); a value too large for a page
   takes overflow pages of its own. So one record written or deleted takes
   at most 2 x (depth + 1) pages besides its overflow pages, with depth
   the deepest tree the change left. While the changes of a delivery can
   together have taken fewer pages than were free at the end of the map
   when its transaction began, minus the commit's reserve, the room check
   after each change (a nested transaction, which costs LMDB megabytes of
   allocation) is left out. */
static void
store_lmdb_delivery_count(struct store_lmdb_env *env, const MDB_val *key,
			  const MDB_val *value)
{
	struct store_lmdb_delivery *delivery = env->delivery;
	size_t page_size = store_lmdb_page_size();

	if (delivery == NULL)
		return;
	delivery->change_ops++;
	/* LMDB keeps a record on its page while it fits in a quarter of
	   it, with room to spare: anything larger is counted as overflow */
	if (value != NULL &&
	    key->mv_size + value->mv_size > page_size / 4) {
		delivery->change_overflow_pages +=
			value->mv_size / page_size + 2;
	}
}

int store_lmdb_put(struct store_lmdb_env *env, MDB_txn *txn, MDB_dbi dbi,
		   MDB_val *key, MDB_val *value)
{
	store_lmdb_delivery_count(env, key, value);
	return mdb_put(txn, dbi, key, value, 0);
}

int store_lmdb_del(struct store_lmdb_env *env, MDB_txn *txn, MDB_dbi dbi,
		   MDB_val *key)
{
	store_lmdb_delivery_count(env, key, NULL);
	return mdb_del(txn, dbi, key, NULL);
}

void store_lmdb_delivery_uncounted(struct store_lmdb_env *env)
{
	if (env->delivery != NULL)
		env->delivery->uncounted = TRUE;
}

/* The most pages the change just made in txn can have taken. */
static size_t
store_lmdb_change_pages(struct store_lmdb_env *env, MDB_txn *txn)
{
	struct store_lmdb_delivery *delivery = env->delivery;
	MDB_dbi dbis[] = { env->records_dbi, env->meta_dbi };
	unsigned int i, depth = 0;
	MDB_stat stat;

	for (i = 0; i < N_ELEMENTS(dbis); i++) {
		if (mdb_stat(txn, dbis[i], &stat) != 0)
			return SIZE_MAX;
		depth = I_MAX(depth, stat.ms_depth);
	}
	return (size_t)delivery->change_ops * 2 * (depth + 1) +
		delivery->change_overflow_pages;
}

/* Whether the delivery's changes so far, this one included, may have left
   less room than the commit needs: only then is the room checked. */
static bool
store_lmdb_delivery_room_unsure(struct store_lmdb_env *env, MDB_txn *txn,
				size_t *changes_pages_r)
{
	struct store_lmdb_delivery *delivery = env->delivery;
	size_t change = store_lmdb_change_pages(env, txn);

	*changes_pages_r = change > SIZE_MAX - delivery->changes_pages ?
		SIZE_MAX : delivery->changes_pages + change;
	return delivery->uncounted ||
		*changes_pages_r > delivery->room_pages ||
		delivery->room_pages - *changes_pages_r <
		STORE_LMDB_COMMIT_RESERVE_PAGES;
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
	size_t changes_pages = 0;
	MDB_txn *txn;
	int rc;

	for (;;) {
		if (delivery->txn == NULL) {
			*error_r = t_strdup_printf(
				"loopguard store %s: the delivery's transaction "
				"ended after an error", env->path);
			return -1;
		}
		delivery->change_ops = 0;
		delivery->change_overflow_pages = 0;
		rc = mdb_txn_begin(env->env, delivery->txn, 0, &txn);
		if (rc == 0) {
			rc = func(store, txn, context, &func_name);
			if (rc == 0 &&
			    store_lmdb_delivery_room_unsure(env, txn,
							    &changes_pages)) {
				store_lmdb_room_checks++;
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
			delivery->changes_pages = changes_pages;
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
		store_lmdb_delivery_txn_began(delivery);
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
	store_lmdb_delivery_txn_began(delivery);
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
