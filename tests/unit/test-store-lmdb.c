/* Unit tests of the LMDB store driver (store-lmdb*.c): its record layer
   directly, the rest through the store API. */

#include "lib.h"
#include "buffer.h"
#include "str.h"
#include "byteorder.h"
#include "unlink-directory.h"
#include "test-common.h"
#include "loopguard-store.h"
#include "store-lmdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <sched.h>
#include <time.h>

#define TEST_NOW 1000000
/* Records that expire when their stored expiry says (a window's payload
   would decide too): the tests choose their payloads freely. */
#define TEST_KIND LOOPGUARD_CODEC_KIND_FINGERPRINT
#define TEST_OTHER_KIND LOOPGUARD_CODEC_KIND_WINDOW
#define MiB (1024 * 1024)

static const char *test_dir;

static struct loopguard_store_settings test_settings(const char *name)
{
	struct loopguard_store_settings set;

	i_zero(&set);
	set.location = t_strdup_printf("%s/%s", test_dir, name);
	set.max_size = 64 * MiB;
	set.sync = FALSE;
	set.log_size = 100;
	return set;
}

static struct loopguard_store *test_open(const struct loopguard_store_settings *set)
{
	struct loopguard_store *db;
	const char *error;

	if (loopguard_store_open(set, &db, &error) < 0)
		i_fatal("loopguard_store_open(%s): %s", set->location, error);
	return db;
}

static bool test_path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static bool test_error_names_path(const char *error, const char *path)
{
	return error != NULL && strstr(error, path) != NULL;
}

/* Stores a given payload with a given expiry; remembers what it saw. */
struct test_set_context {
	const void *payload;
	size_t payload_size;
	time_t expires;
	bool store;

	bool called;
	bool had_old;
	buffer_t *old_payload;
};

static bool
test_set_callback(const struct loopguard_codec_record *old, time_t now ATTR_UNUSED,
		  buffer_t *new_payload, time_t *expires_r, void *context)
{
	struct test_set_context *ctx = context;

	ctx->called = TRUE;
	ctx->had_old = old != NULL;
	if (old != NULL && ctx->old_payload != NULL) {
		buffer_set_used_size(ctx->old_payload, 0);
		buffer_append(ctx->old_payload, old->payload,
			      old->payload_size);
	}
	buffer_append(new_payload, ctx->payload, ctx->payload_size);
	*expires_r = ctx->expires;
	return ctx->store;
}

static int
test_put(struct loopguard_store *db, const char *handle, const char *key,
	 const char *payload, time_t now, time_t expires, const char **error_r)
{
	struct test_set_context ctx;

	i_zero(&ctx);
	ctx.payload = payload;
	ctx.payload_size = strlen(payload);
	ctx.expires = expires;
	ctx.store = TRUE;
	return store_lmdb_update(db, TEST_KIND, handle, key,
				   now, test_set_callback, &ctx, error_r);
}

static int
test_put_size(struct loopguard_store *db, const char *key, size_t size,
	      time_t now, time_t expires, const char **error_r)
{
	struct test_set_context ctx;
	char *payload = t_malloc0(size);

	memset(payload, 'x', size);
	i_zero(&ctx);
	ctx.payload = payload;
	ctx.payload_size = size;
	ctx.expires = expires;
	ctx.store = TRUE;
	return store_lmdb_update(db, TEST_KIND, "", key,
				   now, test_set_callback, &ctx, error_r);
}

static int
test_put_kind(struct loopguard_store *db, enum loopguard_codec_kind kind,
	      const char *key, struct test_set_context *ctx,
	      const char **error_r)
{
	return store_lmdb_update(db, kind, "", key, TEST_NOW,
				 test_set_callback, ctx, error_r);
}

/* 1 = live record with this payload, 0 = none, -1 = error */
static int
test_get(struct loopguard_store *db, const char *handle, const char *key,
	 time_t now, const char **payload_r)
{
	struct loopguard_codec_record record;
	const char *error;
	int ret;

	ret = store_lmdb_lookup(db, TEST_KIND, handle, key, now,
				  pool_datastack_create(), &record, &error);
	if (ret < 0)
		i_error("lookup failed: %s", error);
	*payload_r = ret <= 0 ? NULL :
		t_strndup(record.payload, record.payload_size);
	return ret;
}

/* Stores payload under handle/key and reads it back. */
static bool
test_put_get(struct loopguard_store *db, const char *handle, const char *key,
	     const char *payload)
{
	const char *error, *stored;

	if (test_put(db, handle, key, payload, TEST_NOW, TEST_NOW + 100,
		     &error) < 0) {
		i_error("update failed: %s", error);
		return FALSE;
	}
	return test_get(db, handle, key, TEST_NOW, &stored) == 1 &&
		strcmp(stored, payload) == 0;
}

struct test_count_context {
	unsigned int count;
	const char *expect_key;
	bool found_key;
};

static int
test_count_callback(const struct loopguard_codec_record *record, void *context)
{
	struct test_count_context *ctx = context;

	ctx->count++;
	if (ctx->expect_key != NULL && strcmp(record->key, ctx->expect_key) == 0)
		ctx->found_key = TRUE;
	return 0;
}

/* Records physically present: iterating at time 0 sees every record,
   expired or not. */
static unsigned int test_count_all(struct loopguard_store *db)
{
	struct test_count_context ctx;
	const char *error;

	i_zero(&ctx);
	if (store_lmdb_iterate(db, 0, test_count_callback, &ctx, &error) < 0)
		i_error("iterate failed: %s", error);
	return ctx.count;
}

static int test_wait_child(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) < 0)
		i_fatal("waitpid() failed: %m");
	if (!WIFEXITED(status)) {
		i_error("child %ld died (signal %d)", (long)pid,
			WIFSIGNALED(status) ? WTERMSIG(status) : 0);
		return -1;
	}
	return WEXITSTATUS(status);
}

static void test_open_creates_0600(void)
{
	struct loopguard_store_settings set = test_settings("create");
	struct loopguard_store *db;
	const char *error, *lock_path;
	struct stat st;
	mode_t old_umask;

	test_begin("loopguard db open creates data and lock file 0600");
	/* with umask 0 the mode comes from us alone */
	old_umask = umask(0);
	test_assert(loopguard_store_open(&set, &db, &error) == 0);
	umask(old_umask);

	test_assert(stat(set.location, &st) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_mode & 07777) == 0600);
	lock_path = t_strconcat(set.location, "-lock", NULL);
	test_assert(stat(lock_path, &st) == 0 && (st.st_mode & 07777) == 0600);
	loopguard_store_close(&db);
	test_assert(db == NULL);

	set.location = "relative/path";
	test_assert(loopguard_store_open(&set, &db, &error) < 0 && db == NULL);
	test_end();
}

static void test_roundtrip(void)
{
	struct loopguard_store_settings set = test_settings("roundtrip");
	struct loopguard_codec_record record;
	struct test_set_context ctx;
	struct loopguard_store *db;
	const char *error, *payload;

	test_begin("loopguard db update/lookup/delete round trip");
	set.sync = TRUE;
	db = test_open(&set);
	test_assert(test_put(db, "h1", "key1", "hello", TEST_NOW,
			     TEST_NOW + 100, &error) == 0);
	test_assert(test_get(db, "h1", "key1", TEST_NOW, &payload) == 1 &&
		    strcmp(payload, "hello") == 0);
	test_assert(store_lmdb_lookup(db, TEST_KIND, "h1",
					"key1", TEST_NOW,
					pool_datastack_create(), &record,
					&error) == 1);
	test_assert(record.kind == TEST_KIND &&
		    strcmp(record.handle, "h1") == 0 &&
		    strcmp(record.key, "key1") == 0 &&
		    record.expires == TEST_NOW + 100);
	/* handle and kind separate records */
	test_assert(test_get(db, "h2", "key1", TEST_NOW, &payload) == 0);
	test_assert(store_lmdb_lookup(db, TEST_OTHER_KIND, "h1",
					"key1", TEST_NOW,
					pool_datastack_create(), &record,
					&error) == 0);

	/* the callback sees the old record */
	i_zero(&ctx);
	ctx.payload = "world";
	ctx.payload_size = 5;
	ctx.expires = TEST_NOW + 100;
	ctx.store = TRUE;
	ctx.old_payload = t_buffer_create(16);
	test_assert(store_lmdb_update(db, TEST_KIND, "h1",
					"key1", TEST_NOW, test_set_callback,
					&ctx, &error) == 0);
	test_assert(ctx.had_old && ctx.old_payload->used == 5 &&
		    memcmp(ctx.old_payload->data, "hello", 5) == 0);
	test_assert(test_get(db, "h1", "key1", TEST_NOW, &payload) == 1 &&
		    strcmp(payload, "world") == 0);

	/* FALSE leaves it alone */
	ctx.payload = "ignored";
	ctx.payload_size = 7;
	ctx.store = FALSE;
	test_assert(store_lmdb_update(db, TEST_KIND, "h1",
					"key1", TEST_NOW, test_set_callback,
					&ctx, &error) == 0);
	test_assert(test_get(db, "h1", "key1", TEST_NOW, &payload) == 1 &&
		    strcmp(payload, "world") == 0);

	/* expires <= now deletes */
	test_assert(test_put(db, "h1", "key2", "x", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	test_assert(test_put(db, "h1", "key2", "x", TEST_NOW, TEST_NOW,
			     &error) == 0);
	test_assert(test_get(db, "h1", "key2", 0, &payload) == 0);

	test_assert(store_lmdb_delete(db, TEST_KIND, "h1",
					"key1", &error) == 1);
	test_assert(test_get(db, "h1", "key1", TEST_NOW, &payload) == 0);
	test_assert(store_lmdb_delete(db, TEST_KIND, "h1",
					"key1", &error) == 0);
	loopguard_store_close(&db);
	test_end();
}

static void test_expiry(void)
{
	struct loopguard_store_settings set = test_settings("expiry");
	struct loopguard_store *db = test_open(&set);
	struct test_set_context ctx;
	const char *error, *payload;
	unsigned int i, purged, count;

	test_begin("loopguard db expiry, sweep and purge");
	test_assert(test_put(db, "", "a", "A", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	/* invisible from its expiry on */
	test_assert(test_get(db, "", "a", TEST_NOW + 99, &payload) == 1);
	test_assert(test_get(db, "", "a", TEST_NOW + 100, &payload) == 0);
	i_zero(&ctx);
	ctx.payload = "";
	ctx.store = FALSE;
	test_assert(store_lmdb_update(db, TEST_KIND, "", "a",
					TEST_NOW + 200, test_set_callback,
					&ctx, &error) == 0);
	test_assert(ctx.called && !ctx.had_old);
	loopguard_store_close(&db);

	/* the sweep: every update removes a bounded number of expired
	   records, continuing where the previous one stopped */
	set = test_settings("sweep");
	db = test_open(&set);
	for (i = 0; i < 40; i++) {
		test_assert(test_put(db, "", t_strdup_printf("old%02u", i),
				     "o", TEST_NOW, TEST_NOW + 100,
				     &error) == 0);
	}
	test_assert(test_put(db, "", "zkeep", "k", TEST_NOW, TEST_NOW + 10000,
			     &error) == 0);
	test_assert(test_count_all(db) == 41);
	test_assert(test_put(db, "", "other", "c", TEST_NOW + 200,
			     TEST_NOW + 10000, &error) == 0);
	count = test_count_all(db);
	test_assert(count < 42 && count > 2);
	for (i = 0; i < 4; i++) {
		test_assert(test_put(db, "", "other", "c", TEST_NOW + 200,
				     TEST_NOW + 10000, &error) == 0);
	}
	test_assert(test_count_all(db) == 2);
	test_assert(test_get(db, "", "old00", TEST_NOW, &payload) == 0);
	test_assert(test_get(db, "", "zkeep", TEST_NOW, &payload) == 1);
	loopguard_store_close(&db);

	/* purge: a full pass */
	set = test_settings("purge");
	db = test_open(&set);
	for (i = 0; i < 600; i++) {
		test_assert(test_put(db, "", t_strdup_printf("d%03u", i), "d",
				     TEST_NOW, i % 2 == 0 ? TEST_NOW + 100 :
				     TEST_NOW + 10000, &error) == 0);
	}
	test_assert(loopguard_store_purge(db, TEST_NOW + 200, FALSE, &purged,
				       &error) == 0);
	test_assert(purged == 300);
	test_assert(test_count_all(db) == 300);
	test_assert(test_get(db, "", "d000", TEST_NOW, &payload) == 0);
	test_assert(test_get(db, "", "d001", TEST_NOW, &payload) == 1);

	/* purge --all */
	test_assert(loopguard_store_purge(db, TEST_NOW, TRUE, &purged,
				       &error) == 0);
	test_assert(purged == 300);
	test_assert(test_count_all(db) == 0);
	/* and the store still works */
	test_assert(test_put(db, "", "after", "a", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	test_assert(test_count_all(db) == 1);
	loopguard_store_close(&db);
	test_end();
}

static void test_map_full(void)
{
	struct loopguard_store_settings set = test_settings("full");
	struct loopguard_store *db;
	const char *error = NULL, *payload;
	char *full_error = NULL;
	unsigned int i, stored = 0, purged, before, after;
	struct stat st;
	bool failed = FALSE;
	int ret = 0;

	test_begin("loopguard db map grows up to max_size, then fails");
	set.max_size = 8 * MiB;
	db = test_open(&set);
	/* "e" keys expire at TEST_NOW+100, "l" keys live on. They sort
	   apart, so that purging the "e" keys frees whole pages. */
	for (i = 0; i < 20000 && !failed; i++) T_BEGIN {
		ret = test_put_size(db, t_strdup_printf("%c%05u",
					i % 2 == 0 ? 'e' : 'l', i), 1000,
				    TEST_NOW, i % 2 == 0 ? TEST_NOW + 100 :
				    TEST_NOW + 100000, &error);
		if (ret < 0) {
			failed = TRUE;
			full_error = i_strdup(error);
		} else {
			stored++;
		}
	} T_END;
	test_assert(failed && ret == LOOPGUARD_STORE_FULL);
	test_assert(full_error != NULL &&
		    strstr(full_error, "MDB_MAP_FULL") != NULL &&
		    test_error_names_path(full_error, set.location));
	i_free(full_error);
	/* it grew past the 1 MiB start, but not past the cap */
	test_assert(stored * 1000 > 1 * MiB);
	test_assert(stat(set.location, &st) == 0 && st.st_size > 2 * MiB &&
		    st.st_size <= 8 * MiB);
	/* still full while nothing has expired: not a transient error */
	test_assert(test_put_size(db, "more", 1000, TEST_NOW, TEST_NOW + 100000,
				  &error) == LOOPGUARD_STORE_FULL);

	/* once something expired, a full map looks for it among a bounded
	   number of records per write, going on where the last one
	   stopped: the write succeeds within a few tries, and no write
	   pays for a pass over the whole store */
	test_assert(stored / 2 > 1024 + 16);
	before = test_count_all(db);
	for (i = 0; i < stored / 1024 + 2; i++) {
		ret = test_put_size(db, "more", 1000, TEST_NOW + 200,
				    TEST_NOW + 100000, &error);
		after = test_count_all(db);
		test_assert_idx(before - after <= 1024 + 16, i);
		before = after;
		if (ret == 0)
			break;
		test_assert_idx(ret == LOOPGUARD_STORE_FULL, i);
	}
	test_assert(ret == 0);
	test_assert(test_get(db, "", "l00001", TEST_NOW, &payload) == 1);

	/* fill it up again, then an explicit purge makes room */
	failed = FALSE;
	stored = 0;
	for (i = 0; i < 20000 && !failed; i++) T_BEGIN {
		if (test_put_size(db, t_strdup_printf("n%05u", i), 1000,
				  TEST_NOW + 200, TEST_NOW + 300, &error) < 0)
			failed = TRUE;
		else
			stored++;
	} T_END;
	test_assert(failed && stored > 100);
	test_assert(loopguard_store_purge(db, TEST_NOW + 400, FALSE, &purged,
				       &error) == 0);
	test_assert(purged > 100);
	test_assert(test_get(db, "", "n00000", TEST_NOW + 200, &payload) == 0);
	test_assert(test_put_size(db, "last", 1000, TEST_NOW + 400,
				  TEST_NOW + 100000, &error) == 0);
	test_assert(stat(set.location, &st) == 0 && st.st_size <= 8 * MiB);
	loopguard_store_close(&db);
	test_end();
}

static void test_map_full_log(void)
{
	struct loopguard_store_settings set = test_settings("fulllog");
	struct loopguard_store_event event;
	struct loopguard_store *db;
	const char *error = NULL;
	/* the log appends at the real time: records live beyond it */
	time_t now = time(NULL), expires = now + 100000;
	unsigned int i;
	char *big_key;
	int ret = 0;

	test_begin("loopguard db log append into a store full of live records");
	set.max_size = 2 * MiB;
	db = test_open(&set);
	for (i = 0; i < 20000 && ret == 0; i++) T_BEGIN {
		ret = test_put_size(db, t_strdup_printf("l%05u", i), 1000,
				    now, expires, &error);
	} T_END;
	test_assert(ret == LOOPGUARD_STORE_FULL);

	/* a log entry too big for the room left on any leaf page */
	i_zero(&event);
	event.time = now;
	event.test = "ratelimit";
	event.key = big_key = t_malloc0(20001);
	memset(big_key, 'b', 20000);
	error = NULL;
	test_assert(loopguard_store_log_append(db, &event, &error) ==
		    LOOPGUARD_STORE_FULL);
	test_assert(error != NULL && strstr(error, "full of live") != NULL);
	loopguard_store_close(&db);
	test_end();
}

static void test_map_resized(void)
{
	struct loopguard_store_settings set = test_settings("resized");
	struct loopguard_store *db = test_open(&set);
	const char *error, *payload;
	pid_t pid;

	test_begin("loopguard db adopts a map grown by another process");
	test_assert(test_put(db, "", "parent", "p", TEST_NOW, TEST_NOW + 1000,
			     &error) == 0);
	pid = fork();
	if (pid < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		struct loopguard_store *child_db;
		unsigned int i;
		int ret = 0;

		if (loopguard_store_open(&set, &child_db, &error) < 0)
			_exit(2);
		/* well past the parent's 1 MiB map */
		for (i = 0; i < 3000 && ret == 0; i++) T_BEGIN {
			ret = test_put_size(child_db,
					    t_strdup_printf("c%05u", i), 1000,
					    TEST_NOW, TEST_NOW + 1000, &error);
		} T_END;
		loopguard_store_close(&child_db);
		_exit(ret == 0 ? 0 : 3);
	}
	test_assert(test_wait_child(pid) == 0);
	test_assert(test_put(db, "", "parent2", "p", TEST_NOW, TEST_NOW + 1000,
			     &error) == 0);
	test_assert(test_get(db, "", "c02999", TEST_NOW, &payload) == 1);
	loopguard_store_close(&db);
	test_end();
}

static void test_corrupt_garbage(void)
{
	struct loopguard_store_settings set = test_settings("garbage");
	struct loopguard_store *db;
	const char *error, *broken_path, *payload;
	unsigned char buf[20000];
	unsigned int i, n;
	size_t sizes[] = { 20000, 100 };
	int fd;

	test_begin("loopguard db moves a garbage file aside");
	broken_path = t_strconcat(set.location, ".broken", NULL);
	for (n = 0; n < N_ELEMENTS(sizes); n++) {
		for (i = 0; i < sizeof(buf); i++)
			buf[i] = (unsigned char)(i * 7 + 13 + i / 251);
		fd = open(set.location, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || write(fd, buf, sizes[n]) != (ssize_t)sizes[n])
			i_fatal("write(%s) failed: %m", set.location);
		i_close_fd(&fd);

		error = NULL;
		test_assert_idx(loopguard_store_open(&set, &db, &error) < 0 &&
				db == NULL, n);
		test_assert_idx(test_error_names_path(error, set.location), n);
		test_assert_idx(test_path_exists(broken_path), n);
		test_assert_idx(!test_path_exists(set.location), n);
		test_assert_idx(!test_path_exists(t_strconcat(set.location, "-lock",
							       NULL)), n);

		/* the next open starts afresh */
		test_assert_idx(loopguard_store_open(&set, &db, &error) == 0, n);
		if (db != NULL) {
			test_assert_idx(test_put(db, "", "k", "v", TEST_NOW,
						 TEST_NOW + 10, &error) == 0, n);
			test_assert_idx(test_get(db, "", "k", TEST_NOW,
						 &payload) == 1, n);
			loopguard_store_close(&db);
		}
		i_unlink(set.location);
		i_unlink(t_strconcat(set.location, "-lock", NULL));
	}
	test_end();
}

/* A child keeping the store open, as a concurrent delivery would. */
struct test_holder {
	pid_t pid;
	/* closed to let the child close the store and exit */
	int go_fd;
};

static void
test_holder_start(const struct loopguard_store_settings *set,
		  struct test_holder *holder_r)
{
	int ready[2], go[2];
	char c = 0;

	if (pipe(ready) < 0 || pipe(go) < 0)
		i_fatal("pipe() failed: %m");
	holder_r->pid = fork();
	if (holder_r->pid < 0)
		i_fatal("fork() failed: %m");
	if (holder_r->pid == 0) {
		struct loopguard_store *db;
		const char *error;

		i_close_fd(&ready[0]);
		i_close_fd(&go[1]);
		if (loopguard_store_open(set, &db, &error) < 0)
			_exit(2);
		if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) < 0)
			_exit(3);
		loopguard_store_close(&db);
		_exit(0);
	}
	i_close_fd(&ready[1]);
	i_close_fd(&go[0]);
	if (read(ready[0], &c, 1) != 1)
		i_fatal("the holder child did not open the store");
	i_close_fd(&ready[0]);
	holder_r->go_fd = go[1];
}

/* Returns the child's exit code. */
static int test_holder_stop(struct test_holder *holder)
{
	i_close_fd(&holder->go_fd);
	return test_wait_child(holder->pid);
}

static void test_write_garbage(const char *path, off_t offset, size_t size)
{
	unsigned char *buf = t_malloc_no0(size);
	int fd;

	memset(buf, 0xab, size);
	fd = open(path, O_WRONLY);
	if (fd < 0 || pwrite(fd, buf, size, offset) != (ssize_t)size)
		i_fatal("pwrite(%s) failed: %m", path);
	i_close_fd(&fd);
}

/* Moving a file aside while another process has it open would leave that
   process writing to the old file under the old lock file while the next
   opener starts a new lock file: two writers not excluding each other. */
static void test_corrupt_held(void)
{
	struct loopguard_store_settings set = test_settings("held");
	struct test_holder holder;
	struct loopguard_store *db;
	const char *error = NULL, *broken_path, *lock_path;

	test_begin("loopguard db moves a broken file aside only when unused");
	broken_path = t_strconcat(set.location, ".broken", NULL);
	lock_path = t_strconcat(set.location, "-lock", NULL);
	db = test_open(&set);
	test_assert(test_put(db, "", "k", "v", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	loopguard_store_close(&db);

	test_holder_start(&set, &holder);
	/* both meta pages */
	test_write_garbage(set.location, 0, 2 * sysconf(_SC_PAGESIZE));
	test_assert(loopguard_store_open(&set, &db, &error) < 0 && db == NULL);
	test_assert(test_error_names_path(error, set.location) &&
		    strstr(error, "when no delivery uses it") != NULL);
	test_assert(test_path_exists(set.location));
	test_assert(test_path_exists(lock_path));
	test_assert(!test_path_exists(broken_path));
	test_assert(test_holder_stop(&holder) == 0);

	/* nobody has it open any more: the next open moves it */
	error = NULL;
	test_assert(loopguard_store_open(&set, &db, &error) < 0 && db == NULL);
	test_assert(error != NULL && strstr(error, "moved it to") != NULL);
	test_assert(test_path_exists(broken_path));
	test_assert(!test_path_exists(set.location));
	test_assert(!test_path_exists(lock_path));
	test_assert(loopguard_store_open(&set, &db, &error) == 0);
	if (db != NULL) {
		test_assert(test_count_all(db) == 0);
		loopguard_store_close(&db);
	}
	test_end();
}

static bool test_mem_contains(const unsigned char *data, size_t size,
			      const char *str)
{
	size_t i, len = strlen(str);

	for (i = 0; i + len <= size; i++) {
		if (memcmp(data + i, str, len) == 0)
			return TRUE;
	}
	return FALSE;
}

/* Makes every leaf page holding handle look like no page LMDB knows, so
   that the next search through it fails with MDB_CORRUPTED. */
static unsigned int test_break_leaf(const char *path, const char *handle)
{
	size_t page_size = sysconf(_SC_PAGESIZE);
	const uint16_t flags = 0;
	unsigned char *page = t_malloc_no0(page_size);
	unsigned int broken = 0;
	uint16_t page_flags;
	off_t offset;
	int fd;

	fd = open(path, O_RDWR);
	if (fd < 0)
		i_fatal("open(%s) failed: %m", path);
	for (offset = 0;
	     pread(fd, page, page_size, offset) == (ssize_t)page_size;
	     offset += page_size) {
		/* LMDB's page header: page number, pad, flags (P_LEAF) */
		memcpy(&page_flags, page + sizeof(size_t) + 2,
		       sizeof(page_flags));
		if (page_flags != 0x02 ||
		    !test_mem_contains(page, page_size, handle))
			continue;
		if (pwrite(fd, &flags, sizeof(flags),
			   offset + sizeof(size_t) + 2) != sizeof(flags))
			i_fatal("pwrite(%s) failed: %m", path);
		broken++;
	}
	i_close_fd(&fd);
	return broken;
}

/* Damage that appears while the store is open (the open checks the file)
   closes it for every handle of the process, and moves the file only when
   no other process uses it. */
static void test_corrupt_runtime(void)
{
	struct loopguard_store_settings set = test_settings("runtime");
	const char *handle = "runtime-corruption-handle";
	struct test_holder holder;
	struct loopguard_store *db1, *db2;
	const char *error = NULL, *payload, *broken_path, *lock_path;

	test_begin("loopguard db moves a file found broken in use aside");
	broken_path = t_strconcat(set.location, ".broken", NULL);
	lock_path = t_strconcat(set.location, "-lock", NULL);
	db1 = test_open(&set);
	test_assert(test_put(db1, handle, "k", "v", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);

	/* another process has it open: it stays */
	test_holder_start(&set, &holder);
	test_assert(test_break_leaf(set.location, handle) > 0);
	test_expect_error_string("MDB_CORRUPTED");
	test_assert(test_get(db1, handle, "k", TEST_NOW, &payload) < 0);
	test_expect_no_more_errors();
	test_assert(test_path_exists(set.location) && !test_path_exists(broken_path));
	error = NULL;
	test_assert(test_put(db1, "", "x", "x", TEST_NOW, TEST_NOW + 100,
			     &error) < 0);
	test_assert(error != NULL && strstr(error, "was closed") != NULL);
	loopguard_store_close(&db1);
	test_assert(test_holder_stop(&holder) == 0);
	i_unlink(set.location);
	i_unlink(lock_path);

	/* two handles of this process share the environment */
	db1 = test_open(&set);
	db2 = test_open(&set);
	test_assert(test_put(db1, handle, "k", "v", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	test_assert(test_break_leaf(set.location, handle) > 0);
	test_expect_error_string("moved it to");
	test_assert(test_get(db1, handle, "k", TEST_NOW, &payload) < 0);
	test_expect_no_more_errors();
	test_assert(test_path_exists(broken_path));
	test_assert(!test_path_exists(set.location));
	test_assert(!test_path_exists(lock_path));
	/* the other handle fails cleanly */
	error = NULL;
	test_assert(test_put(db2, "", "x", "x", TEST_NOW, TEST_NOW + 100,
			     &error) < 0);
	test_assert(error != NULL && strstr(error, "was closed") != NULL);
	loopguard_store_close(&db2);
	loopguard_store_close(&db1);

	db1 = test_open(&set);
	test_assert(test_put_get(db1, handle, "k", "v2"));
	loopguard_store_close(&db1);
	test_end();
}

/* The ways test_corrupt_kinds() damages a store; LMDB trusts all of
   them and crashes instead of failing. */
enum test_damage {
	/* 16 bytes of 0xff over the node offsets of the last page */
	TEST_DAMAGE_LAST_PAGE,
	/* a branch page's child pointer far beyond the file */
	TEST_DAMAGE_CHILD_BEYOND,
	/* the records database claims another tree depth */
	TEST_DAMAGE_DEPTH,
	/* an overflow page claims a huge number of pages */
	TEST_DAMAGE_OVERFLOW_COUNT,
};

static uint16_t test_page_flags(const unsigned char *page)
{
	uint16_t flags;

	memcpy(&flags, page + sizeof(size_t) + 2, sizeof(flags));
	return flags;
}

/* The page number of the live main database's root: the newer meta
   page's, whose MDB_db for the main database ends with the root. */
static size_t test_main_root(int fd, size_t page_size)
{
	const size_t hdr = sizeof(size_t) + 8, db_size = 8 + 5 * sizeof(size_t);
	const size_t dbs = hdr + 8 + 2 * sizeof(size_t);
	unsigned char meta[2][512];
	size_t txnid[2], root;
	unsigned int i;

	for (i = 0; i < 2; i++) {
		if (pread(fd, meta[i], sizeof(meta[i]), i * page_size) !=
		    sizeof(meta[i]))
			i_fatal("pread() failed: %m");
		memcpy(&txnid[i], meta[i] + dbs + 2 * db_size +
		       sizeof(size_t), sizeof(size_t));
	}
	i = txnid[0] < txnid[1] ? 1 : 0;
	memcpy(&root, meta[i] + dbs + 2 * db_size - sizeof(size_t),
	       sizeof(root));
	return root;
}

/* The offset of the MDB_db of the "records" database in the main root
   page (a leaf: there are only three named databases). */
static size_t test_records_db(const unsigned char *page, size_t page_size)
{
	size_t off;

	for (off = sizeof(size_t) + 8; off + 7 < page_size; off++) {
		if (memcmp(page + off, "records", 7) == 0)
			return off + 7;
	}
	i_fatal("no records database in the main root page");
}

/* Applies damage to the live tree; returns FALSE if it found no place. */
static bool test_damage_file(const char *path, enum test_damage damage)
{
	size_t page_size = sysconf(_SC_PAGESIZE);
	unsigned char *page = t_malloc_no0(page_size);
	const size_t hdr = sizeof(size_t) + 8;
	struct stat st;
	off_t offset;
	size_t db, pgno;
	uint16_t off, depth;
	uint32_t pages = 0x7fffffff;
	bool done = FALSE;
	int fd;

	fd = open(path, O_RDWR);
	if (fd < 0 || fstat(fd, &st) < 0)
		i_fatal("open(%s) failed: %m", path);
	offset = test_main_root(fd, page_size) * page_size;
	if (pread(fd, page, page_size, offset) != (ssize_t)page_size)
		i_fatal("pread(%s) failed: %m", path);
	db = test_records_db(page, page_size);
	switch (damage) {
	case TEST_DAMAGE_LAST_PAGE:
		offset = st.st_size - page_size;
		if (pread(fd, page, page_size, offset) != (ssize_t)page_size)
			i_fatal("pread(%s) failed: %m", path);
		memset(page + 16, 0xff, 16);
		done = TRUE;
		break;
	case TEST_DAMAGE_CHILD_BEYOND:
		/* the records database's root is a branch page */
		memcpy(&pgno, page + db + 8 + 4 * sizeof(size_t), sizeof(pgno));
		offset = pgno * page_size;
		if (pread(fd, page, page_size, offset) != (ssize_t)page_size)
			i_fatal("pread(%s) failed: %m", path);
		if (test_page_flags(page) != 0x01)
			break;
		/* the first node's page number, low 32 bits */
		memcpy(&off, page + hdr, sizeof(off));
		memset(page + off, 0x7f, 4);
		done = TRUE;
		break;
	case TEST_DAMAGE_DEPTH:
		memcpy(&depth, page + db + 6, sizeof(depth));
		depth++;
		memcpy(page + db + 6, &depth, sizeof(depth));
		done = TRUE;
		break;
	case TEST_DAMAGE_OVERFLOW_COUNT:
		/* any overflow page will do: the first 12 records have one
		   each, and all of them live */
		for (offset = 2 * page_size; !done && offset < st.st_size;
		     offset += page_size) {
			if (pread(fd, page, page_size, offset) !=
			    (ssize_t)page_size)
				i_fatal("pread(%s) failed: %m", path);
			done = test_page_flags(page) == 0x04;
		}
		offset -= page_size;
		memcpy(page + sizeof(size_t) + 4, &pages, sizeof(pages));
		break;
	}
	if (done &&
	    pwrite(fd, page, page_size, offset) != (ssize_t)page_size)
		i_fatal("pwrite(%s) failed: %m", path);
	i_close_fd(&fd);
	return done;
}

/* In a child: every operation a delivery or doveadm does, on a damaged
   store. Exits 0 when the open refused the store as damaged and moved it
   aside, 1 when anything succeeded on it. */
static void test_damaged_child(const struct loopguard_store_settings *set)
{
	struct loopguard_store_event event;
	struct loopguard_store *db;
	const char *error, *payload;
	unsigned int i, purged;

	if (loopguard_store_open(set, &db, &error) < 0) {
		_exit(strstr(error, "damaged") != NULL &&
		      strstr(error, "moved it to") != NULL &&
		      test_path_exists(t_strconcat(set->location, ".broken",
						   NULL)) ? 0 : 2);
	}
	for (i = 0; i < 300; i++) T_BEGIN {
		(void)test_get(db, "", t_strdup_printf("k%04u", i), TEST_NOW,
			       &payload);
		(void)test_put_size(db, t_strdup_printf("k%04u", i), 5000,
				    TEST_NOW, TEST_NOW + 1000, &error);
	} T_END;
	i_zero(&event);
	event.time = TEST_NOW;
	(void)loopguard_store_log_append(db, &event, &error);
	(void)test_count_all(db);
	(void)loopguard_store_purge(db, TEST_NOW + 5000, FALSE, &purged, &error);
	(void)loopguard_store_purge(db, TEST_NOW, TRUE, &purged, &error);
	loopguard_store_close(&db);
	_exit(1);
}

/* Runs in a child: fills a store, damages it and uses it. */
static void
test_corrupt_kind_child(const struct loopguard_store_settings *set,
			enum test_damage damage, bool idle)
{
	struct loopguard_store *db;
	const char *error;
	unsigned int i;

	loopguard_store_keep_idle(idle);
	db = test_open(set);
	/* enough for branch pages and overflow pages */
	for (i = 0; i < 300; i++) T_BEGIN {
		if (test_put_size(db, t_strdup_printf("k%04u", i),
				  i < 12 ? 5000 : 100, TEST_NOW,
				  TEST_NOW + 1000, &error) < 0)
			_exit(3);
	} T_END;
	/* idle: this process keeps it open, as an LMTP process keeps the
	   stores of its last users */
	loopguard_store_close(&db);
	/* damage comes later than the last write, in another tick of the
	   file system's clock */
	usleep(50000);
	if (!test_damage_file(set->location, damage))
		_exit(4);
	test_damaged_child(set);
}

static void test_corrupt_kinds(void)
{
	static const char *const names[] = {
		"last page", "child beyond file", "depth", "overflow count"
	};
	struct loopguard_store_settings set;
	unsigned int kind, idle;
	pid_t pid;
	int ret;

	test_begin("loopguard db refuses damaged pages instead of crashing");
	for (kind = 0; kind < N_ELEMENTS(names); kind++)
	for (idle = 0; idle < 2; idle++) T_BEGIN {
		set = test_settings(t_strdup_printf("damage%u-%u", kind, idle));
		pid = fork();
		if (pid < 0)
			i_fatal("fork() failed: %m");
		if (pid == 0)
			test_corrupt_kind_child(&set, kind, idle == 1);
		if ((ret = test_wait_child(pid)) != 0) {
			i_error("damage '%s'%s not refused (exit %d)",
				names[kind], idle == 1 ? " (idle store)" : "",
				ret);
			test_assert_idx(FALSE, kind);
		}
	} T_END;
	test_end();
}

static long test_fs_type_nfs(const char *dir ATTR_UNUSED)
{
	return 0x6969;
}

static void test_network_fs(void)
{
	struct loopguard_store_settings set = test_settings("network");
	struct loopguard_store *db;
	const char *error = NULL;

	test_begin("loopguard db refuses a network file system");
	test_assert(strcmp(store_lmdb_network_fs_name(0x6969), "nfs") == 0);
	test_assert(strcmp(store_lmdb_network_fs_name(
		(long)(int32_t)0xFF534D42), "cifs") == 0);
	test_assert(strcmp(store_lmdb_network_fs_name(0xFF534D42),
			   "cifs") == 0);
	/* ext4, tmpfs, xfs, btrfs */
	test_assert(store_lmdb_network_fs_name(0xEF53) == NULL);
	test_assert(store_lmdb_network_fs_name(0x01021994) == NULL);
	test_assert(store_lmdb_network_fs_name(0x58465342) == NULL);
	test_assert(store_lmdb_network_fs_name(0x9123683E) == NULL);

	store_lmdb_fs_type_override = test_fs_type_nfs;
	test_assert(loopguard_store_open(&set, &db, &error) < 0 && db == NULL);
	test_assert(test_error_names_path(error, set.location) &&
		    strstr(error, "nfs") != NULL &&
		    strstr(error, "sieve_loopguard_db_allow_network_fs") != NULL);
	test_assert(!test_path_exists(set.location));
	/* the administrator knows better */
	set.allow_network_fs = TRUE;
	test_assert(loopguard_store_open(&set, &db, &error) == 0);
	loopguard_store_close(&db);
	store_lmdb_fs_type_override = NULL;

	/* this test's own directory is local */
	set.allow_network_fs = FALSE;
	test_assert(loopguard_store_open(&set, &db, &error) == 0);
	loopguard_store_close(&db);
	test_end();
}

static void test_truncated(void)
{
	struct loopguard_store_settings set = test_settings("truncated");
	struct loopguard_store *db = test_open(&set);
	const char *error;
	unsigned int i;
	struct stat st;
	pid_t pid;

	test_begin("loopguard db moves a truncated file aside (no SIGBUS)");
	for (i = 0; i < 500; i++) T_BEGIN {
		test_assert(test_put_size(db, t_strdup_printf("t%04u", i), 900,
					  TEST_NOW, TEST_NOW + 1000,
					  &error) == 0);
	} T_END;
	loopguard_store_close(&db);
	if (stat(set.location, &st) < 0)
		i_fatal("stat(%s) failed: %m", set.location);
	test_assert(st.st_size > 400 * 1024);
	if (truncate(set.location, st.st_size / 2) < 0)
		i_fatal("truncate(%s) failed: %m", set.location);

	/* in a child: the failure this guards against is a SIGBUS */
	pid = fork();
	if (pid < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		const char *payload;
		int ret;

		if (loopguard_store_open(&set, &db, &error) == 0) {
			/* touch the data, as a delivery would */
			for (i = 0; i < 500; i++) T_BEGIN {
				(void)test_get(db, "", t_strdup_printf(
					"t%04u", i), TEST_NOW, &payload);
			} T_END;
			loopguard_store_close(&db);
			_exit(1);
		}
		ret = test_error_names_path(error, set.location) &&
			strstr(error, "truncated") != NULL ? 0 : 2;
		_exit(ret);
	}
	test_assert(test_wait_child(pid) == 0);
	if (!test_path_exists(t_strconcat(set.location, ".broken", NULL))) {
		/* reopening the truncated file would SIGBUS here too */
		test_assert(FALSE);
		test_end();
		return;
	}
	test_assert(loopguard_store_open(&set, &db, &error) == 0);
	if (db != NULL) {
		test_assert(test_count_all(db) == 0);
		loopguard_store_close(&db);
	}
	test_end();
}

static int test_open_unwritable_child(const char *path)
{
	struct loopguard_store_settings set = test_settings("unused");
	struct loopguard_store *db;
	const char *error;

	set.location = path;
	if (loopguard_store_open(&set, &db, &error) == 0) {
		loopguard_store_close(&db);
		return 1;
	}
	if (!test_error_names_path(error, path) ||
	    strstr(error, "Permission denied") == NULL)
		return 2;
	return test_path_exists(path) ? 3 : 0;
}

static void test_unwritable(void)
{
	struct loopguard_store_settings set = test_settings("unused");
	struct loopguard_store *db;
	const char *error = NULL, *file_path, *dir_path;
	pid_t pid;
	int fd;

	test_begin("loopguard db in an unwritable place fails cleanly");

	/* the parent is a regular file: ENOTDIR for everybody, root too */
	file_path = t_strdup_printf("%s/plainfile", test_dir);
	fd = open(file_path, O_WRONLY | O_CREAT, 0600);
	if (fd < 0)
		i_fatal("open(%s) failed: %m", file_path);
	i_close_fd(&fd);
	set.location = t_strdup_printf("%s/store", file_path);
	test_assert(loopguard_store_open(&set, &db, &error) < 0 && db == NULL);
	test_assert(test_error_names_path(error, set.location) &&
		    strstr(error, "Not a directory") != NULL);

	/* a directory we may not write into: EACCES. Root ignores the
	   mode, so then a child drops to nobody first. */
	dir_path = t_strdup_printf("%s/readonly", test_dir);
	if (mkdir(dir_path, 0755) < 0)
		i_fatal("mkdir(%s) failed: %m", dir_path);
	if (geteuid() != 0 && chmod(dir_path, 0500) < 0)
		i_fatal("chmod(%s) failed: %m", dir_path);
	set.location = t_strdup_printf("%s/store", dir_path);

	pid = fork();
	if (pid < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(10);
		/* make sure the case really is unwritable */
		if (access(dir_path, W_OK) == 0)
			_exit(11);
		_exit(test_open_unwritable_child(set.location));
	}
	test_assert(test_wait_child(pid) == 0);
	(void)chmod(dir_path, 0700);
	test_end();
}

static void test_long_key(void)
{
	struct loopguard_store_settings set = test_settings("longkey");
	struct loopguard_store *db = test_open(&set);
	struct loopguard_codec_record record;
	struct test_count_context ctx;
	const char *error, *payload;
	char *key1, *key2;

	test_begin("loopguard db hashes a 2000-byte key, keeps it readable");
	key1 = t_malloc0(2001);
	memset(key1, 'k', 2000);
	key2 = t_strdup_noconst(key1);
	key2[1999] = 'z';

	test_assert(test_put(db, "h", key1, "one", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	test_assert(test_put(db, "h", key2, "two", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	test_assert(test_get(db, "h", key1, TEST_NOW, &payload) == 1 &&
		    strcmp(payload, "one") == 0);
	test_assert(test_get(db, "h", key2, TEST_NOW, &payload) == 1 &&
		    strcmp(payload, "two") == 0);
	test_assert(store_lmdb_lookup(db, TEST_KIND, "h", key1,
					TEST_NOW, pool_datastack_create(),
					&record, &error) == 1);
	test_assert(record.key != NULL && strlen(record.key) == 2000 &&
		    strcmp(record.key, key1) == 0);

	i_zero(&ctx);
	ctx.expect_key = key2;
	test_assert(store_lmdb_iterate(db, TEST_NOW, test_count_callback,
					 &ctx, &error) == 0);
	test_assert(ctx.count == 2 && ctx.found_key);

	test_assert(store_lmdb_delete(db, TEST_KIND, "h", key1,
					&error) == 1);
	test_assert(test_get(db, "h", key2, TEST_NOW, &payload) == 1);
	loopguard_store_close(&db);
	test_end();
}

static void test_long_handle(void)
{
	struct loopguard_store_settings set = test_settings("longhandle");
	struct loopguard_store *db = test_open(&set);
	struct loopguard_codec_record record;
	struct test_count_context ctx;
	const char *error = NULL, *payload;
	char *handle;

	test_begin("loopguard db stores a handle longer than 65535 bytes");
	handle = t_malloc0(70001);
	memset(handle, 'h', 70000);
	test_assert(test_put_get(db, handle, "k", "long"));
	/* a handle one byte shorter is another record */
	test_assert(test_get(db, handle + 1, "k", TEST_NOW, &payload) == 0);
	test_assert(store_lmdb_lookup(db, TEST_KIND, handle,
					"k", TEST_NOW, pool_datastack_create(),
					&record, &error) == 1);
	test_assert(record.handle != NULL &&
		    strcmp(record.handle, handle) == 0);

	i_zero(&ctx);
	ctx.expect_key = "k";
	test_assert(store_lmdb_iterate(db, TEST_NOW, test_count_callback,
					 &ctx, &error) == 0);
	test_assert(ctx.count == 1 && ctx.found_key);
	test_assert(store_lmdb_delete(db, TEST_KIND, handle,
					"k", &error) == 1);
	test_assert(test_count_all(db) == 0);
	loopguard_store_close(&db);
	test_end();
}

/* A stored value: version 2, expires (8 bytes), handle length (4 bytes
   BE), handle, key length (4 bytes BE), key, payload. */
#define TEST_VALUE_HEADER_SIZE 13

/* Rewrites bytes of every stored copy of the record whose handle is
   handle, at offset from the start of the value. */
static unsigned int
test_patch_value(const char *path, const char *handle, int offset,
		 const unsigned char *bytes, size_t size)
{
	size_t handle_len = strlen(handle), pos, len;
	unsigned char *data;
	unsigned int patched = 0;
	struct stat st;
	int fd;

	fd = open(path, O_RDWR);
	if (fd < 0 || fstat(fd, &st) < 0)
		i_fatal("open(%s) failed: %m", path);
	len = st.st_size;
	data = i_malloc(len);
	if (pread(fd, data, len, 0) != (ssize_t)len)
		i_fatal("read(%s) failed: %m", path);
	i_assert(handle_len < 256);
	for (pos = TEST_VALUE_HEADER_SIZE; pos + handle_len <= len; pos++) {
		if (memcmp(data + pos, handle, handle_len) != 0 ||
		    memcmp(data + pos - 4, "\0\0\0", 3) != 0 ||
		    data[pos - 1] != handle_len ||
		    data[pos - TEST_VALUE_HEADER_SIZE] != 2)
			continue;
		if (pwrite(fd, bytes, size,
			   pos - TEST_VALUE_HEADER_SIZE + offset) != (ssize_t)size)
			i_fatal("pwrite(%s) failed: %m", path);
		patched++;
	}
	i_free(data);
	i_close_fd(&fd);
	return patched;
}

static void test_wrong_version(void)
{
	struct loopguard_store_settings set = test_settings("version");
	struct loopguard_store *db = test_open(&set);
	struct test_set_context ctx;
	/* 3 is the compact records' */
	const unsigned char version = 9;
	const unsigned char huge_len[4] = { 0x7f, 0xff, 0xff, 0xff };
	const char *handle = "versiontest-handle";
	const char *handle2 = "sizetest-handle";
	const char *error, *payload;

	test_begin("loopguard db treats an unreadable value as absent");
	test_assert(test_put(db, handle, "k", "old", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	test_assert(test_put(db, handle2, "k", "old", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	loopguard_store_close(&db);
	test_assert(test_patch_value(set.location, handle, 0, &version, 1) > 0);
	/* the key length field follows the handle */
	test_assert(test_patch_value(set.location, handle2,
				     TEST_VALUE_HEADER_SIZE + strlen(handle2),
				     huge_len, 4) > 0);

	db = test_open(&set);
	test_expect_error_string("unknown version 9");
	test_assert(test_get(db, handle, "k", TEST_NOW, &payload) == 0);
	test_expect_no_more_errors();
	test_expect_error_string("key length exceeds");
	test_assert(test_get(db, handle2, "k", TEST_NOW, &payload) == 0);
	test_expect_no_more_errors();

	/* the update callback gets NULL and may store afresh */
	i_zero(&ctx);
	ctx.payload = "new";
	ctx.payload_size = 3;
	ctx.expires = TEST_NOW + 100;
	ctx.store = TRUE;
	/* "unknown version 9" from the lookup, then the sweep in the same
	   update drops the other unreadable record */
	test_expect_error_string_n_times("unreadable", 2);
	test_assert(store_lmdb_update(db, TEST_KIND, handle,
					"k", TEST_NOW, test_set_callback,
					&ctx, &error) == 0);
	test_expect_no_more_errors();
	test_assert(ctx.called && !ctx.had_old);
	test_assert(test_get(db, handle, "k", TEST_NOW, &payload) == 1 &&
		    strcmp(payload, "new") == 0);
	test_assert(test_count_all(db) == 1);
	loopguard_store_close(&db);
	test_end();
}

/* Values written before the handle length grew to 4 bytes stay
   readable. */
static void test_version_1(void)
{
	struct loopguard_store_settings set = test_settings("version1");
	struct loopguard_store *db = test_open(&set);
	const char *handle = "version1-handle";
	const char *error, *payload;
	buffer_t *v1;
	unsigned char *p;

	test_begin("loopguard db reads version 1 values");
	test_assert(test_put(db, handle, "k", "old", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	loopguard_store_close(&db);

	/* the same value in version 1's layout, 2 bytes shorter: the
	   payload gets 2 more to fill the stored size */
	v1 = t_buffer_create(64);
	p = buffer_append_space_unsafe(v1, 11);
	p[0] = 1;
	cpu64_to_be_unaligned(TEST_NOW + 100, p + 1);
	cpu16_to_be_unaligned(strlen(handle), p + 9);
	buffer_append(v1, handle, strlen(handle));
	buffer_append(v1, "\0\0\0\1k", 5);
	buffer_append(v1, "old!!", 5);
	test_assert(v1->used == TEST_VALUE_HEADER_SIZE + strlen(handle) +
		    4 + 1 + 3);
	test_assert(test_patch_value(set.location, handle, 0, v1->data,
				     v1->used) > 0);

	db = test_open(&set);
	test_assert(test_get(db, handle, "k", TEST_NOW, &payload) == 1 &&
		    strcmp(payload, "old!!") == 0);
	test_assert(test_get(db, handle, "k", TEST_NOW + 100, &payload) == 0);
	/* an update rewrites it in the current version */
	test_assert(test_put_get(db, handle, "k", "new"));
	loopguard_store_close(&db);
	test_end();
}

struct test_log_context {
	unsigned int count;
	time_t times[16];
	bool fields_ok;
};

static int
test_log_callback(const struct loopguard_store_event *event, void *context)
{
	struct test_log_context *ctx = context;

	if (ctx->count < N_ELEMENTS(ctx->times))
		ctx->times[ctx->count] = event->time;
	ctx->count++;
	ctx->fields_ok = strcmp(event->test, "looptest") == 0 &&
		strcmp(event->handle, "h\tx") == 0 &&
		strcmp(event->key, "a\nb\001c") == 0 &&
		strcmp(event->reasons, "hops marker") == 0 &&
		strcmp(event->message_id, "") == 0 &&
		event->count == 3 && event->window == 3600 &&
		event->locked_until == TEST_NOW + 60;
	return 0;
}

static void test_log(void)
{
	struct loopguard_store_settings set = test_settings("log");
	struct loopguard_store *db;
	struct loopguard_store_event event;
	struct test_log_context ctx;
	const char *error;
	unsigned int i;

	test_begin("loopguard db capped log");
	set.log_size = 5;
	db = test_open(&set);
	i_zero(&event);
	event.test = "looptest";
	event.handle = "h\tx";
	event.key = "a\nb\001c";
	event.reasons = "hops marker";
	event.message_id = NULL;
	event.count = 3;
	event.window = 3600;
	event.locked_until = TEST_NOW + 60;
	for (i = 0; i < 8; i++) {
		event.time = TEST_NOW + i;
		test_assert(loopguard_store_log_append(db, &event, &error) == 0);
	}
	i_zero(&ctx);
	test_assert(loopguard_store_log_iterate(db, 0, test_log_callback, &ctx,
					     &error) == 0);
	test_assert(ctx.count == 5 && ctx.fields_ok);
	for (i = 0; i < 5 && i < ctx.count; i++)
		test_assert_idx(ctx.times[i] == TEST_NOW + 3 + i, i);

	i_zero(&ctx);
	test_assert(loopguard_store_log_iterate(db, TEST_NOW + 5,
					     test_log_callback, &ctx,
					     &error) == 0);
	test_assert(ctx.count == 3 && ctx.times[0] == TEST_NOW + 5);
	loopguard_store_close(&db);

	/* log_size 0 keeps nothing, and trims what is there */
	set.log_size = 0;
	db = test_open(&set);
	test_assert(loopguard_store_log_append(db, &event, &error) == 0);
	i_zero(&ctx);
	test_assert(loopguard_store_log_iterate(db, 0, test_log_callback, &ctx,
					     &error) == 0);
	test_assert(ctx.count == 0);
	loopguard_store_close(&db);
	test_end();
}

static void test_shared_env(void)
{
	struct loopguard_store_settings set = test_settings("shared");
	struct loopguard_store *db1, *db2;
	const char *error, *payload, *lock_path;
	pid_t pid;

	test_begin("loopguard db shares one env per path in a process");
	db1 = test_open(&set);
	db2 = test_open(&set);
	test_assert(db1 != db2);
	test_assert(test_put(db1, "", "one", "1", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	test_assert(test_get(db2, "", "one", TEST_NOW, &payload) == 1);
	loopguard_store_close(&db1);

	/* With two MDB_envs in one process, closing one would drop the
	   process's fcntl() lock on the lock file, and another process
	   could then take it over and reset it under us. */
	lock_path = t_strconcat(set.location, "-lock", NULL);
	pid = fork();
	if (pid < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		struct flock fl;
		int fd = open(lock_path, O_RDWR);

		i_zero(&fl);
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		fl.l_start = 0;
		fl.l_len = 1;
		if (fd < 0 || fcntl(fd, F_GETLK, &fl) < 0)
			_exit(2);
		_exit(fl.l_type == F_UNLCK ? 1 : 0);
	}
	test_assert(test_wait_child(pid) == 0);

	test_assert(test_put(db2, "", "two", "2", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	test_assert(test_get(db2, "", "one", TEST_NOW, &payload) == 1);
	loopguard_store_close(&db2);
	test_end();
}

static bool
test_counter_callback(const struct loopguard_codec_record *old, time_t now,
		      buffer_t *new_payload, time_t *expires_r,
		      void *context ATTR_UNUSED)
{
	uint32_t counter = 0;

	if (old != NULL && old->payload_size == sizeof(counter))
		memcpy(&counter, old->payload, sizeof(counter));
	counter++;
	buffer_append(new_payload, &counter, sizeof(counter));
	*expires_r = now + 1000;
	return TRUE;
}

#define TEST_CHILDREN 8
#define TEST_CHILD_UPDATES 200

/* Runs child() in TEST_CHILDREN processes at once and asserts that each
   exited 0; child() returns its exit code. */
static void
test_run_children(int (*child)(struct loopguard_store_settings *set,
			       struct loopguard_store *inherited),
		  struct loopguard_store_settings *set,
		  struct loopguard_store *inherited)
{
	pid_t pids[TEST_CHILDREN];
	unsigned int i;

	for (i = 0; i < TEST_CHILDREN; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			i_fatal("fork() failed: %m");
		if (pids[i] == 0)
			_exit(child(set, inherited));
	}
	for (i = 0; i < TEST_CHILDREN; i++)
		test_assert_idx(test_wait_child(pids[i]) == 0, i);
}

static int
test_concurrency_child(struct loopguard_store_settings *set,
		       struct loopguard_store *db)
{
	struct loopguard_store *child_db;
	const char *error;
	unsigned int j;

	/* the handle from before the fork is refused */
	if (store_lmdb_update(db, TEST_KIND, "", "counter",
				TEST_NOW, test_counter_callback, NULL,
				&error) == 0 ||
	    strstr(error, "fork") == NULL)
		return 2;
	if (loopguard_store_open(set, &child_db, &error) < 0) {
		i_error("child open: %s", error);
		return 3;
	}
	for (j = 0; j < TEST_CHILD_UPDATES; j++) {
		if (store_lmdb_update(child_db, TEST_KIND, "",
					"counter", TEST_NOW,
					test_counter_callback, NULL,
					&error) < 0) {
			i_error("child update: %s", error);
			return 4;
		}
	}
	loopguard_store_close(&child_db);
	/* the inherited one is only forgotten */
	loopguard_store_close(&db);
	return 0;
}

static void test_concurrency(void)
{
	struct loopguard_store_settings set = test_settings("concurrency");
	struct loopguard_store *db = test_open(&set);
	struct loopguard_codec_record record;
	const char *error;
	uint32_t counter = 0;

	test_begin("loopguard db serializes concurrent updates exactly");
	test_run_children(test_concurrency_child, &set, db);

	/* the parent's handle is unharmed by the children */
	test_assert(store_lmdb_lookup(db, TEST_KIND, "",
					"counter", TEST_NOW,
					pool_datastack_create(), &record,
					&error) == 1);
	if (record.payload_size == sizeof(counter))
		memcpy(&counter, record.payload, sizeof(counter));
	test_assert(counter == TEST_CHILDREN * TEST_CHILD_UPDATES);
	loopguard_store_close(&db);
	test_end();
}

static struct loopguard_store_delivery *test_begin_delivery(struct loopguard_store *db)
{
	struct loopguard_store_delivery *delivery;
	const char *error;

	if (loopguard_store_delivery_begin(db, &delivery, &error) < 0)
		i_fatal("loopguard_store_delivery_begin(): %s", error);
	return delivery;
}

/* A forked child's view: what other processes see, committed only. */
static int test_child_sees(const struct loopguard_store_settings *set,
			   const char *key)
{
	pid_t pid = fork();

	if (pid < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		struct loopguard_store *child_db;
		const char *error, *payload;
		int ret;

		if (loopguard_store_open(set, &child_db, &error) < 0)
			_exit(3);
		ret = test_get(child_db, "", key, TEST_NOW, &payload);
		loopguard_store_close(&child_db);
		_exit(ret < 0 ? 2 : ret);
	}
	return test_wait_child(pid);
}

static void test_delivery(void)
{
	struct loopguard_store_settings set = test_settings("delivery");
	struct loopguard_store *db = test_open(&set), *db2;
	struct loopguard_store_delivery *delivery, *second;
	const char *error, *payload;

	test_begin("loopguard db delivery: one transaction, commit or abort");
	delivery = test_begin_delivery(db);
	test_assert(test_put(db, "", "a", "1", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	/* the delivery sees its own change at once */
	test_assert(test_get(db, "", "a", TEST_NOW, &payload) == 1);
	/* any handle of the file in this process goes into it rather than
	   waiting for its own writer lock */
	db2 = test_open(&set);
	test_assert(test_put(db2, "", "b", "2", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	test_assert(loopguard_store_delivery_begin(db2, &second, &error) < 0 &&
		    second == NULL);
	loopguard_store_close(&db2);
	test_assert(loopguard_store_delivery_commit(&delivery, &error) == 0 &&
		    delivery == NULL);
	test_assert(test_child_sees(&set, "a") == 1);
	test_assert(test_child_sees(&set, "b") == 1);

	/* an aborted delivery leaves nothing */
	delivery = test_begin_delivery(db);
	test_assert(test_put(db, "", "c", "3", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	test_assert(test_put(db, "", "a", "changed", TEST_NOW,
			     TEST_NOW + 100, &error) == 0);
	loopguard_store_delivery_abort(&delivery);
	test_assert(delivery == NULL);
	test_assert(test_get(db, "", "c", TEST_NOW, &payload) == 0);
	test_assert(test_get(db, "", "a", TEST_NOW, &payload) == 1 &&
		    strcmp(payload, "1") == 0);
	/* a delivery that changed nothing commits nothing */
	delivery = test_begin_delivery(db);
	test_assert(test_get(db, "", "a", TEST_NOW, &payload) == 1);
	test_assert(loopguard_store_delivery_commit(&delivery, &error) == 0);
	loopguard_store_delivery_abort(&delivery);
	loopguard_store_close(&db);
	test_end();
}

/* A process that dies in the middle of a delivery: its changes are gone,
   and the writer lock it held does not block the next delivery. */
static void test_delivery_dies(void)
{
	struct loopguard_store_settings set = test_settings("delivery-dies");
	struct loopguard_store *db;
	struct loopguard_store_delivery *delivery;
	const char *error, *payload;
	int status;
	pid_t pid;

	test_begin("loopguard db delivery: a process dying in it leaves nothing");
	pid = fork();
	if (pid < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		struct loopguard_store *child_db = test_open(&set);

		delivery = test_begin_delivery(child_db);
		if (test_put(child_db, "", "dead", "1", TEST_NOW,
			     TEST_NOW + 100, &error) < 0)
			_exit(2);
		(void)kill(getpid(), SIGKILL);
		_exit(3);
	}
	test_assert(waitpid(pid, &status, 0) == pid &&
		    WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	db = test_open(&set);
	delivery = test_begin_delivery(db);
	test_assert(test_get(db, "", "dead", TEST_NOW, &payload) == 0);
	test_assert(test_put(db, "", "alive", "1", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	test_assert(loopguard_store_delivery_commit(&delivery, &error) == 0);
	test_assert(test_get(db, "", "alive", TEST_NOW, &payload) == 1);
	loopguard_store_close(&db);
	test_end();
}

/* Deliveries of several processes serialize as a whole: a value read at
   the start of one and written at its end is never overwritten by
   another's. */
static int
test_delivery_serializes_child(struct loopguard_store_settings *set,
			       struct loopguard_store *inherited ATTR_UNUSED)
{
	struct loopguard_store *child_db;
	struct loopguard_store_delivery *delivery;
	const char *error, *payload;
	unsigned int j, n;
	int ret = 0;

	if (loopguard_store_open(set, &child_db, &error) < 0)
		return 3;
	for (j = 0; j < 20 && ret == 0; j++) T_BEGIN {
		delivery = test_begin_delivery(child_db);
		if (test_get(child_db, "", "n", TEST_NOW, &payload) < 0)
			ret = 4;
		else {
			n = payload == NULL ? 0 : atoi(payload);
			/* another process's delivery would slip in here if
			   deliveries did not serialize */
			usleep(200);
			if (test_put(child_db, "", "n", dec2str(n + 1),
				     TEST_NOW, TEST_NOW + 100, &error) < 0 ||
			    loopguard_store_delivery_commit(&delivery,
							 &error) < 0)
				ret = 5;
		}
	} T_END;
	if (ret != 0)
		return ret;
	loopguard_store_close(&child_db);
	return 0;
}

static void test_delivery_serializes(void)
{
	struct loopguard_store_settings set = test_settings("delivery-serial");
	struct loopguard_store *db = test_open(&set);
	const char *payload;

	test_begin("loopguard db delivery: concurrent deliveries serialize");
	test_run_children(test_delivery_serializes_child, &set, db);
	test_assert(test_get(db, "", "n", TEST_NOW, &payload) == 1 &&
		    atoi(payload) == TEST_CHILDREN * 20);
	loopguard_store_close(&db);
	test_end();
}

/* A full map inside a delivery: the change that does not fit fails alone,
   while room is still left for the commit, so that the changes that fitted
   are kept; the map grows for the next delivery. */
static void test_delivery_map_full(void)
{
	struct loopguard_store_settings set = test_settings("delivery-full");
	struct loopguard_store *db;
	struct loopguard_store_delivery *delivery;
	const char *error = NULL, *payload;
	char *full_error = NULL;
	unsigned int i, round, stored = 0;
	int ret = 0;

	test_begin("loopguard db delivery: a full map fails one change");
	set.max_size = 8 * MiB;
	db = test_open(&set);
	delivery = test_begin_delivery(db);
	for (i = 0; i < 20000 && ret == 0; i++) T_BEGIN {
		ret = test_put_size(db, t_strdup_printf("k%05u", i), 1000,
				    TEST_NOW, TEST_NOW + 100000, &error);
		if (ret == 0)
			stored++;
		else
			full_error = i_strdup(error);
	} T_END;
	test_assert(ret < 0 && stored > 100 && stored < 20000);
	test_assert(full_error != NULL &&
		    strstr(full_error, "MDB_MAP_FULL") != NULL &&
		    strstr(full_error,
			   "the map grows after this delivery") != NULL);
	i_free(full_error);
	/* the delivery still reads its earlier changes */
	test_assert(test_get(db, "", "k00000", TEST_NOW, &payload) == 1);
	test_assert(loopguard_store_delivery_commit(&delivery, &error) == 0);
	test_assert(delivery == NULL);
	test_assert(test_child_sees(&set, "k00000") == 1);
	test_assert(test_child_sees(&set, t_strdup_printf("k%05u",
							   stored - 1)) == 1);
	/* the next delivery finds a larger map */
	delivery = test_begin_delivery(db);
	test_assert(test_put_size(db, "next", 1000, TEST_NOW,
				  TEST_NOW + 100000, &error) == 0);
	test_assert(loopguard_store_delivery_commit(&delivery, &error) == 0);
	test_assert(test_get(db, "", "next", TEST_NOW, &payload) == 1);

	/* at its limit the map is full, and the error says no more */
	for (round = 0; round < 20 && ret != LOOPGUARD_STORE_FULL; round++) {
		delivery = test_begin_delivery(db);
		for (ret = 0; ret == 0; i++) T_BEGIN {
			ret = test_put_size(db, t_strdup_printf("k%05u", i),
					    1000, TEST_NOW, TEST_NOW + 100000,
					    &error);
			if (ret != 0) {
				i_free(full_error);
				full_error = i_strdup(error);
			}
		} T_END;
		test_assert(loopguard_store_delivery_commit(&delivery,
							    &error) == 0);
	}
	test_assert(ret == LOOPGUARD_STORE_FULL && full_error != NULL &&
		    strstr(full_error, "full of live records") != NULL &&
		    strstr(full_error, "grows") == NULL);
	i_free(full_error);
	loopguard_store_close(&db);
	test_end();
}

/* The room left for the commit is checked after a change only when the
   delivery's changes may have taken the pages that were free when it
   began: never for a few changes on a roomy map. Filling the map in one
   delivery, with records of every size and sweeps deleting, the checks
   come back before the room runs out: a change that does not fit fails
   alone and the commit succeeds. */
static void test_delivery_room_counted(void)
{
	static const size_t sizes[] = { 40, 900, 3000, 9000, 30000 };
	struct loopguard_store_settings set;
	struct loopguard_store *db;
	struct loopguard_store_delivery *delivery;
	const char *error;
	unsigned int i, n, checks, stored;
	int ret;

	test_begin("loopguard db delivery: room checked only when in doubt");
	set = test_settings("delivery-room");
	db = test_open(&set);
	checks = store_lmdb_delivery_room_checks();
	delivery = test_begin_delivery(db);
	for (i = 0; i < 3; i++) {
		test_assert_idx(test_put_size(db, t_strdup_printf("s%u", i),
					      100, TEST_NOW, TEST_NOW + 1000,
					      &error) == 0, i);
	}
	test_assert(loopguard_store_delivery_commit(&delivery, &error) == 0);
	test_assert(store_lmdb_delivery_room_checks() == checks);
	loopguard_store_close(&db);

	for (n = 0; n < N_ELEMENTS(sizes); n++) T_BEGIN {
		set = test_settings(t_strdup_printf("delivery-room-%u", n));
		set.max_size = 2 * MiB;
		db = test_open(&set);
		/* dead by the delivery's time: its sweeps delete them */
		for (i = 0; i < 20; i++) {
			test_assert_idx(test_put_size(db,
				t_strdup_printf("e%05u", i), 200, TEST_NOW,
				TEST_NOW + 10, &error) == 0, i);
		}
		checks = store_lmdb_delivery_room_checks();
		delivery = test_begin_delivery(db);
		ret = 0;
		stored = 0;
		for (i = 0; i < 100000 && ret == 0; i++) {
			ret = test_put_size(db, t_strdup_printf("k%05u", i),
					    sizes[n], TEST_NOW + 100,
					    TEST_NOW + 100000, &error);
			if (ret == 0)
				stored++;
		}
		test_assert_idx(ret != 0 && stored > 1, n);
		/* some changes went unchecked, the last ones were checked */
		test_assert_idx(store_lmdb_delivery_room_checks() > checks, n);
		test_assert_idx(store_lmdb_delivery_room_checks() - checks + 1 <
				stored, n);
		test_assert_idx(loopguard_store_delivery_commit(&delivery,
							     &error) == 0, n);
		test_assert_idx(test_child_sees(&set, "k00000") == 1, n);
		test_assert_idx(test_child_sees(&set, t_strdup_printf(
			"k%05u", stored - 1)) == 1, n);
		test_assert_idx(test_child_sees(&set, "e00000") == 0, n);
		loopguard_store_close(&db);
	} T_END;
	test_end();
}

/* Waits until process pid sleeps (state S in /proc/<pid>/stat), without
   waiting for any time: a process that sleeps inside
   loopguard_store_delivery_begin() waits for the writer lock. Returns at
   once where /proc cannot tell. */
static void test_wait_sleeping(pid_t pid)
{
	const char *path = t_strdup_printf("/proc/%ld/stat", (long)pid);
	char buf[512];
	const char *p;
	ssize_t ret;
	int fd;

	for (;;) {
		if ((fd = open(path, O_RDONLY)) < 0)
			return;
		ret = read(fd, buf, sizeof(buf) - 1);
		i_close_fd(&fd);
		if (ret <= 0)
			return;
		buf[ret] = '\0';
		if ((p = strrchr(buf, ')')) == NULL || p[1] == '\0')
			return;
		if (p[2] == 'S')
			return;
		(void)sched_yield();
	}
}

static void test_pipe_read(int fd)
{
	char c;

	if (read(fd, &c, 1) != 1)
		i_fatal("read(pipe) failed: %m");
}

static void test_pipe_write(int fd)
{
	if (write(fd, "x", 1) != 1)
		i_fatal("write(pipe) failed: %m");
}

#define TEST_WAITER_RECORDS 150
/* records' worth of room the parent leaves in the map */
#define TEST_WAITER_ROOM_RECORDS 40

/* The delivery of the child: waits for the writer lock, then writes more
   than the room the parent's delivery leaves in the map. Returns the exit
   code. */
static int
test_delivery_waiter(const struct loopguard_store_settings *set,
		     int to_parent, int from_parent)
{
	struct loopguard_store *db;
	struct loopguard_store_delivery *delivery;
	const char *error;
	unsigned int i;
	int ret = 0;

	if (loopguard_store_open(set, &db, &error) < 0)
		return 2;
	test_pipe_write(to_parent);
	test_pipe_read(from_parent);
	test_pipe_write(to_parent);
	if (loopguard_store_delivery_begin(db, &delivery, &error) < 0)
		return 3;
	for (i = 0; i < TEST_WAITER_RECORDS && ret == 0; i++) T_BEGIN {
		ret = test_put_size(db, t_strdup_printf("w%05u", i), 1000,
				    TEST_NOW, TEST_NOW + 100000, &error);
		if (ret < 0)
			i_error("waiter: change %u: %s", i, error);
	} T_END;
	if (loopguard_store_delivery_commit(&delivery, &error) < 0)
		return 4;
	loopguard_store_close(&db);
	return ret == 0 ? 0 : 5;
}

/* The room in the map is judged once a delivery holds the writer lock:
   while it waited, the deliveries ahead of it used the room there was
   when it began to wait. Judged before, the map was left just above the
   pages in use, and a later change of the delivery failed on
   MDB_MAP_FULL while the file was far below its limit. */
static void test_delivery_map_full_after_wait(void)
{
	struct loopguard_store_settings set = test_settings("delivery-wait");
	struct loopguard_store *db = test_open(&set);
	struct loopguard_store_delivery *delivery;
	const char *error = NULL, *payload;
	unsigned int i, stored = 0, keep;
	int to_parent[2], from_parent[2], ret = 0;
	pid_t pid;

	test_begin("loopguard db delivery: room judged after waiting for the lock");
	if (pipe(to_parent) < 0 || pipe(from_parent) < 0)
		i_fatal("pipe() failed: %m");
	pid = fork();
	if (pid < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		_exit(test_delivery_waiter(&set, to_parent[1],
					   from_parent[0]));
	}
	/* the child has the store open: opening takes the writer lock */
	test_pipe_read(to_parent[0]);

	/* How many records fill the map: found in a delivery that is
	   aborted, so that the next one can leave a known room free. */
	delivery = test_begin_delivery(db);
	for (i = 0; i < 2000 && ret == 0; i++) T_BEGIN {
		ret = test_put_size(db, t_strdup_printf("h%05u", i), 1000,
				    TEST_NOW, TEST_NOW + 100000, &error);
		if (ret == 0)
			stored++;
	} T_END;
	test_assert(ret < 0 && stored > 2 * TEST_WAITER_ROOM_RECORDS);
	loopguard_store_delivery_abort(&delivery);
	/* room for the child's first changes, not for all of them */
	keep = stored > TEST_WAITER_ROOM_RECORDS ?
		stored - TEST_WAITER_ROOM_RECORDS : 0;
	delivery = test_begin_delivery(db);
	for (i = 0; i < keep; i++) T_BEGIN {
		test_assert_idx(test_put_size(db,
			t_strdup_printf("h%05u", i), 1000, TEST_NOW,
			TEST_NOW + 100000, &error) == 0, i);
	} T_END;

	/* the child begins its delivery while the map still looks nearly
	   empty, and waits for the writer lock: only then does the parent
	   commit */
	test_pipe_write(from_parent[1]);
	test_pipe_read(to_parent[0]);
	test_wait_sleeping(pid);
	test_assert(loopguard_store_delivery_commit(&delivery, &error) == 0);
	test_assert(test_wait_child(pid) == 0);
	test_assert(test_get(db, "", t_strdup_printf("w%05u",
			TEST_WAITER_RECORDS - 1), TEST_NOW, &payload) == 1);
	i_close_fd(&to_parent[0]);
	i_close_fd(&to_parent[1]);
	i_close_fd(&from_parent[0]);
	i_close_fd(&from_parent[1]);
	loopguard_store_close(&db);
	test_end();
}

/* Runs last inside test_run(), while the library is still initialized. */
/*
 * The store API on this driver
 */

struct test_window_list {
	unsigned int count;
	const char *key;
	unsigned int count_in_window;
};

static int
test_window_list_callback(const struct loopguard_store_window *window,
			  void *context)
{
	struct test_window_list *list = context;

	list->count++;
	list->key = t_strdup(window->key);
	list->count_in_window = window->state.count_in_window;
	return 0;
}

static void test_store_window(void)
{
	struct loopguard_store_settings set = test_settings("window");
	const struct loopguard_window_params params = {
		.count = 1, .period = 60, .lock = 0 };
	unsigned char hash1[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE] = { 1 };
	unsigned char hash2[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE] = { 2 };
	struct loopguard_window_result result;
	struct test_window_list list;
	struct loopguard_store *db;
	const char *error;

	test_begin("store API: window check, peek, list and delete");
	db = test_open(&set);
	test_assert(loopguard_store_window_check(db, "h", "k", &params, hash1,
						 TEST_NOW, TRUE, &result,
						 &error) == 0);
	test_assert(!result.exceeded && result.count_in_window == 1);
	/* :noupdate counts nothing, but tells what counting would do */
	test_assert(loopguard_store_window_check(db, "h", "k", &params, hash2,
						 TEST_NOW, FALSE, &result,
						 &error) == 0);
	test_assert(result.exceeded);
	test_assert(loopguard_store_window_check(db, "h", "k", &params, hash1,
						 TEST_NOW + 1, TRUE, &result,
						 &error) == 0);
	test_assert(result.already_counted && !result.exceeded &&
		    result.count_in_window == 1);
	test_assert(loopguard_store_window_check(db, "h", "k", &params, hash2,
						 TEST_NOW + 2, TRUE, &result,
						 &error) == 0);
	test_assert(result.exceeded && result.count_in_window == 2);
	/* a fingerprint is no window: list shows only windows */
	test_assert(test_put(db, "h", "other", "x", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);

	i_zero(&list);
	test_assert(loopguard_store_window_iterate(db, NULL, TEST_NOW + 3,
			test_window_list_callback, &list, &error) == 0);
	test_assert(list.count == 1 && strcmp(list.key, "k") == 0 &&
		    list.count_in_window == 2);
	i_zero(&list);
	test_assert(loopguard_store_window_iterate(db, "other", TEST_NOW + 3,
			test_window_list_callback, &list, &error) == 0);
	test_assert(list.count == 0);

	test_assert(loopguard_store_window_delete(db, "h", "k", &error) == 1);
	test_assert(loopguard_store_window_delete(db, "h", "k", &error) == 0);
	test_assert(loopguard_store_window_check(db, "h", "k", &params, hash2,
						 TEST_NOW + 4, FALSE, &result,
						 &error) == 0);
	test_assert(!result.exceeded && result.count_in_window == 1);
	loopguard_store_close(&db);
	test_end();
}

static void test_store_fingerprint(void)
{
	struct loopguard_store_settings set = test_settings("fingerprint");
	unsigned char fp[LOOPGUARD_STORE_FINGERPRINT_SIZE];
	struct test_set_context ctx;
	struct loopguard_store *db;
	const char *error;
	bool seen;

	test_begin("store API: fingerprint check and mark");
	memset(fp, 0xab, sizeof(fp));
	db = test_open(&set);
	test_assert(loopguard_store_fingerprint_check(db, fp, 60, TEST_NOW,
						      &seen, &error) == 0 &&
		    !seen);
	test_assert(loopguard_store_fingerprint_check(db, fp, 60,
						      TEST_NOW + 59, &seen,
						      &error) == 0 && seen);
	/* the sighting at +59 restarted the period */
	test_assert(loopguard_store_fingerprint_check(db, fp, 60,
						      TEST_NOW + 100, &seen,
						      &error) == 0 && seen);
	test_assert(loopguard_store_fingerprint_check(db, fp, 60,
						      TEST_NOW + 200, &seen,
						      &error) == 0 && !seen);
	/* a value of the wrong size is not trusted, and is replaced */
	i_zero(&ctx);
	ctx.payload = "abc";
	ctx.payload_size = 3;
	ctx.expires = TEST_NOW + 400;
	ctx.store = TRUE;
	test_assert(store_lmdb_update(db, LOOPGUARD_CODEC_KIND_COMPACT, "",
			loopguard_codec_fingerprint_compact_key(fp),
			TEST_NOW + 300, test_set_callback, &ctx,
			&error) == 0);
	test_expect_error_string("ignoring a fingerprint record of 3 bytes");
	test_assert(loopguard_store_fingerprint_check(db, fp, 60,
						      TEST_NOW + 301, &seen,
						      &error) == 0 && !seen);
	test_expect_no_more_errors();
	test_assert(loopguard_store_fingerprint_check(db, fp, 60,
						      TEST_NOW + 302, &seen,
						      &error) == 0 && seen);
	loopguard_store_close(&db);
	test_end();
}

/* A fingerprint remembered in the general form, by a store written before
   the compact records, counts until it expires. */
static void test_store_fingerprint_legacy(void)
{
	struct loopguard_store_settings set = test_settings("fplegacy");
	unsigned char fp[LOOPGUARD_STORE_FINGERPRINT_SIZE];
	struct test_set_context ctx;
	struct loopguard_store *db;
	buffer_t *payload;
	const char *error;
	bool seen;

	test_begin("store API: fingerprints of the general form honoured");
	memset(fp, 0xcd, sizeof(fp));
	db = test_open(&set);
	payload = t_buffer_create(8);
	loopguard_codec_fingerprint_write(TEST_NOW, payload);
	i_zero(&ctx);
	ctx.payload = payload->data;
	ctx.payload_size = payload->used;
	ctx.expires = TEST_NOW + 60;
	ctx.store = TRUE;
	test_assert(test_put_kind(db, LOOPGUARD_CODEC_KIND_FINGERPRINT,
				  loopguard_codec_fingerprint_key(fp),
				  &ctx, &error) == 0);
	test_assert(loopguard_store_fingerprint_check(db, fp, 60,
						      TEST_NOW + 30, &seen,
						      &error) == 0 && seen);
	/* the check at +30 marked it compactly, which counts from then */
	test_assert(loopguard_store_fingerprint_check(db, fp, 60,
						      TEST_NOW + 80, &seen,
						      &error) == 0 && seen);
	loopguard_store_close(&db);
	/* expired, the old record no longer counts */
	set = test_settings("fplegacy2");
	db = test_open(&set);
	test_assert(test_put_kind(db, LOOPGUARD_CODEC_KIND_FINGERPRINT,
				  loopguard_codec_fingerprint_key(fp),
				  &ctx, &error) == 0);
	test_assert(loopguard_store_fingerprint_check(db, fp, 60,
						      TEST_NOW + 60, &seen,
						      &error) == 0 && !seen);
	loopguard_store_close(&db);

	/* a store found without them is looked at again after an hour */
	set = test_settings("fplegacy3");
	db = test_open(&set);
	test_assert(loopguard_store_fingerprint_check(db, fp, 3600, TEST_NOW,
						      &seen, &error) == 0 &&
		    !seen);
	memset(fp, 0xce, sizeof(fp));
	buffer_set_used_size(payload, 0);
	loopguard_codec_fingerprint_write(TEST_NOW + 3000, payload);
	ctx.payload = payload->data;
	ctx.payload_size = payload->used;
	ctx.expires = TEST_NOW + 6600;
	test_assert(test_put_kind(db, LOOPGUARD_CODEC_KIND_FINGERPRINT,
				  loopguard_codec_fingerprint_key(fp),
				  &ctx, &error) == 0);
	test_assert(loopguard_store_fingerprint_check(db, fp, 3600,
						      TEST_NOW + 3700, &seen,
						      &error) == 0 && seen);
	loopguard_store_close(&db);
	test_end();
}

static void test_store_exists(void)
{
	struct loopguard_store_settings set = test_settings("exists");
	struct loopguard_store *db;
	const char *error;

	test_begin("store API: exists never creates a store");
	test_assert(loopguard_store_exists(&set, &error) == 0);
	test_assert(!test_path_exists(set.location));
	db = test_open(&set);
	loopguard_store_close(&db);
	test_assert(loopguard_store_exists(&set, &error) == 1);

	set.location = "redis:host=127.0.0.1";
	test_assert(loopguard_store_open(&set, &db, &error) < 0 &&
		    db == NULL && strstr(error, "redis:") != NULL);
	test_end();
}

static void test_remove_dir(void)
{
	const char *error;

	if (unlink_directory(test_dir, UNLINK_DIRECTORY_FLAG_RMDIR,
			     &error) < 0)
		i_error("%s", error);
}

/* Compact records: the key is kept as its bytes, no readable copy of it
   in the value, and the payload and expiry come back as stored. */
static void test_compact(void)
{
	struct loopguard_store_settings set = test_settings("compact");
	const char *key = "00112233445566778899aabbccddeeff";
	const char *other = "00112233445566778899aabbccddeef0";
	struct loopguard_codec_record record;
	struct test_set_context ctx;
	struct loopguard_store *db;
	const char *error;

	test_begin("loopguard db compact records");
	db = test_open(&set);
	i_zero(&ctx);
	ctx.payload = "\x01\x02\x03\x04";
	ctx.payload_size = 4;
	ctx.expires = TEST_NOW + 100;
	ctx.store = TRUE;
	test_assert(store_lmdb_update(db, LOOPGUARD_CODEC_KIND_COMPACT, "",
				      key, TEST_NOW, test_set_callback,
				      &ctx, &error) == 0);
	test_assert(ctx.called && !ctx.had_old);
	test_assert(store_lmdb_lookup(db, LOOPGUARD_CODEC_KIND_COMPACT, "",
				      key, TEST_NOW, pool_datastack_create(),
				      &record, &error) == 1);
	test_assert(record.kind == LOOPGUARD_CODEC_KIND_COMPACT &&
		    strcmp(record.key, key) == 0 &&
		    record.expires == TEST_NOW + 100 &&
		    record.payload_size == 4 &&
		    memcmp(record.payload, "\x01\x02\x03\x04", 4) == 0);
	test_assert(store_lmdb_lookup(db, LOOPGUARD_CODEC_KIND_COMPACT, "",
				      other, TEST_NOW,
				      pool_datastack_create(),
				      &record, &error) == 0);
	/* the other form of a fingerprint with the same key does not meet it */
	test_assert(store_lmdb_lookup(db, LOOPGUARD_CODEC_KIND_FINGERPRINT, "",
				      key, TEST_NOW, pool_datastack_create(),
				      &record, &error) == 0);
	test_assert(test_count_all(db) == 1);
	/* expired, it is gone */
	test_assert(store_lmdb_lookup(db, LOOPGUARD_CODEC_KIND_COMPACT, "",
				      key, TEST_NOW + 100,
				      pool_datastack_create(),
				      &record, &error) == 0);
	test_assert(store_lmdb_delete(db, LOOPGUARD_CODEC_KIND_COMPACT, "",
				      key, &error) == 1);
	test_assert(test_count_all(db) == 0);
	loopguard_store_close(&db);
	test_end();
}

/* A closed store stays open for the next delivery, but never serves a
   path whose file was moved aside or replaced meanwhile. */
static void test_idle_reuse(void)
{
	struct loopguard_store_settings set = test_settings("idle");
	struct loopguard_codec_record record;
	struct loopguard_store *db;
	const char *error, *moved;
	pid_t pid;

	test_begin("loopguard db reuses a closed store only for its file");
	loopguard_store_keep_idle(TRUE);
	db = test_open(&set);
	test_assert(test_put(db, "", "kept", "1", TEST_NOW, TEST_NOW + 100,
			     &error) == 0);
	loopguard_store_close(&db);

	/* reopened: the same file, the record is there */
	db = test_open(&set);
	test_assert(store_lmdb_lookup(db, TEST_KIND, "",
					"kept", TEST_NOW, pool_datastack_create(),
					&record, &error) == 1);
	loopguard_store_close(&db);

	/* another process moves the file aside and starts a new one */
	moved = t_strconcat(set.location, ".old", NULL);
	test_assert(rename(set.location, moved) == 0);
	pid = fork();
	if (pid < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		struct loopguard_store *child_db;

		if (loopguard_store_open(&set, &child_db, &error) < 0 ||
		    test_put(child_db, "", "new", "2", TEST_NOW,
			     TEST_NOW + 100, &error) < 0)
			_exit(1);
		loopguard_store_close(&child_db);
		_exit(0);
	}
	test_assert(test_wait_child(pid) == 0);
	db = test_open(&set);
	test_assert(store_lmdb_lookup(db, TEST_KIND, "",
					"kept", TEST_NOW, pool_datastack_create(),
					&record, &error) == 0);
	test_assert(store_lmdb_lookup(db, TEST_KIND, "",
					"new", TEST_NOW, pool_datastack_create(),
					&record, &error) == 1);
	loopguard_store_close(&db);

	/* other limits open it anew, and it still holds what was written */
	set.max_size = 32 * MiB;
	db = test_open(&set);
	test_assert(store_lmdb_lookup(db, TEST_KIND, "",
					"new", TEST_NOW, pool_datastack_create(),
					&record, &error) == 1);
	loopguard_store_close(&db);
	loopguard_store_keep_idle(FALSE);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_open_creates_0600,
		test_roundtrip,
		test_expiry,
		test_map_full,
		test_map_full_log,
		test_map_resized,
		test_compact,
		test_corrupt_garbage,
		test_corrupt_held,
		test_corrupt_runtime,
		test_corrupt_kinds,
		test_network_fs,
		test_truncated,
		test_unwritable,
		test_long_key,
		test_long_handle,
		test_wrong_version,
		test_version_1,
		test_log,
		test_shared_env,
		test_concurrency,
		test_delivery,
		test_delivery_dies,
		test_delivery_serializes,
		test_delivery_map_full,
		test_delivery_map_full_after_wait,
		test_delivery_room_counted,
		test_idle_reuse,
		test_store_window,
		test_store_fingerprint,
		test_store_fingerprint_legacy,
		test_store_exists,
		test_remove_dir,
		NULL
	};
	char template[] = "/tmp/test-loopguard-db.XXXXXX";

	if (mkdtemp(template) == NULL) {
		fprintf(stderr, "mkdtemp() failed: %m\n");
		return 1;
	}
	/* the unwritable test's child runs as nobody and must reach it */
	(void)chmod(template, 0755);
	test_dir = template;
	return test_run(test_functions);
}
