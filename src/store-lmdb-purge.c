/* The LMDB driver's clean-up: the sweep every update does, room made in
   a full map, and doveadm's purge. Expired and unreadable records go. */

#include "lib.h"
#include "buffer.h"

#include "store-lmdb-private.h"

/* Records examined for expired ones when the map is full. */
#define STORE_LMDB_ROOM_SCAN_COUNT 1024
/* Records examined / deleted per transaction by a full purge. */
#define STORE_LMDB_PURGE_SCAN_COUNT 1024
#define STORE_LMDB_PURGE_DELETE_COUNT 256

#define STORE_LMDB_META_SWEEP "sweep"

static void store_lmdb_keylist_add(buffer_t *list, const MDB_val *k)
{
	uint32_t size = k->mv_size;

	buffer_append(list, &size, sizeof(size));
	buffer_append(list, k->mv_data, k->mv_size);
}

/* Deletes the keys collected by store_lmdb_keylist_add(). */
static int
store_lmdb_keylist_delete(struct store_lmdb_env *env, MDB_txn *txn,
			  MDB_dbi dbi, const buffer_t *list,
			  const char **func_r)
{
	const unsigned char *p = list->data, *end = p + list->used;
	uint32_t size;
	MDB_val k;
	int rc;

	while (p < end) {
		memcpy(&size, p, sizeof(size));
		k.mv_size = size;
		k.mv_data = (void *)(p + sizeof(size));
		p += sizeof(size) + size;
		rc = store_lmdb_del(env, txn, dbi, &k);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			*func_r = "mdb_del";
			return rc;
		}
	}
	return 0;
}

int store_lmdb_reap(struct store_lmdb_env *env, MDB_txn *txn,
		    struct store_lmdb_reap *reap, const char **func_r)
{
	MDB_cursor *cursor;
	MDB_val k, v;
	unsigned int scanned = 0, deletes = 0;
	int rc;

	buffer_set_used_size(reap->next_key, 0);
	buffer_set_used_size(reap->dead, 0);
	reap->deleted = 0;
	/* this may be a retry after MDB_MAP_FULL */
	i_zero(&reap->unreadable);

	*func_r = "mdb_cursor_open";
	if ((rc = mdb_cursor_open(txn, env->records_dbi, &cursor)) != 0)
		return rc;
	if (reap->start->used > 0) {
		k.mv_data = (void *)reap->start->data;
		k.mv_size = reap->start->used;
		rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
	}
	while (rc == 0) {
		if (scanned == reap->max_scan ||
		    deletes == reap->max_deletes) {
			buffer_append(reap->next_key, k.mv_data, k.mv_size);
			break;
		}
		scanned++;
		if (store_lmdb_record_is_dead(env, &k, &v, reap->now,
					      &reap->unreadable)) {
			store_lmdb_keylist_add(reap->dead, &k);
			deletes++;
		}
		rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cursor);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		*func_r = "mdb_cursor_get";
		return rc;
	}
	reap->deleted = deletes;
	return store_lmdb_keylist_delete(env, txn, env->records_dbi, reap->dead,
					 func_r);
}

static int
store_lmdb_room_txn(struct store_lmdb *store, MDB_txn *txn, void *context,
		    const char **func_r)
{
	return store_lmdb_reap(store->env, txn, context, func_r);
}

/* After MDB_MAP_FULL: frees what has expired among a bounded number of
   records, continuing where the last sweep stopped, then grows the map.
   A full pass over a full store would cost every delivery a scan of all
   its records under the write lock; bounded, successive deliveries cover
   the store between them. Returns 0 when the retry has a chance,
   MDB_MAP_FULL when it has none, or another MDB error. */
int store_lmdb_make_room(struct store_lmdb *store, time_t now,
			 const char **func_r)
{
	struct store_lmdb_reap reap;
	bool grew, reserved = FALSE;
	int rc;

	i_zero(&reap);
	reap.now = now;
	reap.max_scan = STORE_LMDB_ROOM_SCAN_COUNT;
	reap.max_deletes = STORE_LMDB_PURGE_DELETE_COUNT;
	/* The position is kept in memory: storing it would take pages of
	   the full map even when nothing was deleted. */
	reap.start = store->env->room_position;
	reap.next_key = t_buffer_create(64);
	reap.dead = t_buffer_create(1024);
	for (;;) {
		rc = store_lmdb_write_once(store, store_lmdb_room_txn, &reap,
					   func_r);
		if (rc != MDB_MAP_FULL)
			break;
		/* deleting needs fresh pages too: fewer at a time, in the
		   reserve */
		if (!reserved && store_lmdb_reserve_use(store->env))
			reserved = TRUE;
		else if (reap.max_deletes > 1)
			reap.max_deletes /= 2;
		else
			break;
	}
	if (reserved)
		store_lmdb_reserve_release(store->env);
	if (rc != 0 && rc != MDB_MAP_FULL)
		return rc;
	if (rc == 0) {
		buffer_set_used_size(store->env->room_position, 0);
		buffer_append_buf(store->env->room_position, reap.next_key,
				  0, SIZE_MAX);
		store_lmdb_unreadable_log(store, &reap.unreadable,
					  "dropped");
	}
	grew = store_lmdb_grow(store->env);
	return (rc == 0 && reap.deleted > 0) || grew ? 0 : MDB_MAP_FULL;
}

/* Examines a bounded number of records from where the previous sweep
   stopped and deletes the dead ones, so that the store stays small
   without any cron job while each delivery's work stays bounded. */
int store_lmdb_sweep(struct store_lmdb *store, MDB_txn *txn,
		     struct store_lmdb_reap *sweep, const char **func_r)
{
	struct store_lmdb_env *env = store->env;
	buffer_t start;
	MDB_val mk, mv;
	int rc;

	mk.mv_data = STORE_LMDB_META_SWEEP;
	mk.mv_size = strlen(STORE_LMDB_META_SWEEP);
	rc = mdb_get(txn, env->meta_dbi, &mk, &mv);
	if (rc == MDB_NOTFOUND)
		mv.mv_size = 0;
	else if (rc != 0) {
		*func_r = "mdb_get";
		return rc;
	}
	buffer_create_from_const_data(&start, mv.mv_data, mv.mv_size);
	sweep->start = &start;
	rc = store_lmdb_reap(env, txn, sweep, func_r);
	sweep->start = NULL;
	if (rc != 0)
		return rc;

	/* An empty position wraps around to the first record. */
	mv.mv_data = (void *)sweep->next_key->data;
	mv.mv_size = sweep->next_key->used;
	*func_r = "mdb_put";
	return store_lmdb_put(env, txn, env->meta_dbi, &mk, &mv);
}

/*
 * Purge
 */

static int
store_lmdb_purge_batch_txn(struct store_lmdb *store, MDB_txn *txn,
			   void *context, const char **func_r)
{
	return store_lmdb_reap(store->env, txn, context, func_r);
}

/* A full pass in short transactions. When a batch of deletions does not
   fit (deleting needs fresh pages too), the batch shrinks; at a single
   record the map grows, and at the limit the reserve is used. */
static int
store_lmdb_purge_expired(struct store_lmdb *store, time_t now,
			 unsigned int *purged_r, const char **func_r)
{
	struct store_lmdb_reap reap;
	struct store_lmdb_unreadable unreadable;
	buffer_t *start;
	bool reserved = FALSE;
	int rc;

	*purged_r = 0;
	i_zero(&unreadable);
	i_zero(&reap);
	reap.now = now;
	reap.max_scan = STORE_LMDB_PURGE_SCAN_COUNT;
	reap.max_deletes = STORE_LMDB_PURGE_DELETE_COUNT;
	start = buffer_create_dynamic(default_pool, 64);
	reap.start = start;
	reap.next_key = buffer_create_dynamic(default_pool, 64);
	reap.dead = buffer_create_dynamic(default_pool, 1024);
	for (;;) {
		rc = store_lmdb_write_once(store, store_lmdb_purge_batch_txn,
					   &reap, func_r);
		if (rc == MDB_MAP_FULL) {
			if (reap.max_deletes > 1) {
				reap.max_deletes /= 2;
				continue;
			}
			if (store_lmdb_grow(store->env))
				continue;
			if (!reserved && store_lmdb_reserve_use(store->env)) {
				reserved = TRUE;
				continue;
			}
		}
		if (rc != 0)
			break;
		*purged_r += reap.deleted;
		store_lmdb_unreadable_merge(&unreadable, &reap.unreadable);
		if (reap.next_key->used == 0)
			break;
		/* the pages this batch freed are there for the next one */
		if (reap.max_deletes < STORE_LMDB_PURGE_DELETE_COUNT)
			reap.max_deletes *= 2;
		buffer_set_used_size(start, 0);
		buffer_append_buf(start, reap.next_key, 0, SIZE_MAX);
	}
	if (reserved)
		store_lmdb_reserve_release(store->env);
	buffer_free(&start);
	buffer_free(&reap.next_key);
	buffer_free(&reap.dead);
	store_lmdb_unreadable_log(store, &unreadable, "dropped");
	return rc;
}

static int
store_lmdb_purge_all_txn(struct store_lmdb *store, MDB_txn *txn,
			 void *context, const char **func_r)
{
	struct store_lmdb_env *env = store->env;
	unsigned int *purged_r = context;
	MDB_stat stat;
	int rc;

	*func_r = "mdb_stat";
	if ((rc = mdb_stat(txn, env->records_dbi, &stat)) != 0)
		return rc;
	*purged_r = stat.ms_entries;
	store_lmdb_delivery_uncounted(env);
	*func_r = "mdb_drop";
	if ((rc = mdb_drop(txn, env->records_dbi, 0)) != 0 ||
	    (rc = mdb_drop(txn, env->log_dbi, 0)) != 0 ||
	    (rc = mdb_drop(txn, env->meta_dbi, 0)) != 0)
		return rc;
	return 0;
}

int store_lmdb_purge(struct loopguard_store *_store, time_t now, bool all,
		     unsigned int *purged_r, const char **error_r)
{
	struct store_lmdb *store = store_lmdb_cast(_store);
	const char *func;
	int rc;

	*purged_r = 0;
	if (store_lmdb_check(store, error_r) < 0)
		return -1;
	if (all) {
		/* deletions only: LOOPGUARD_STORE_FULL cannot happen */
		return store_lmdb_write(store, now, TRUE,
					store_lmdb_purge_all_txn,
					purged_r, error_r) < 0 ? -1 : 0;
	}
	rc = store_lmdb_purge_expired(store, now, purged_r, &func);
	if (rc != 0) {
		*error_r = store_lmdb_failed(store->env, func, rc);
		return -1;
	}
	return 0;
}

