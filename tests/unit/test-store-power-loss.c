/* A power failure at any moment leaves the LMDB store intact, holding
   every delivery committed before it, except with sieve_loopguard_sync =
   no at most the last one.

   This program's own pwrite(), writev(), write(), fdatasync() and fsync()
   come before libc's for liblmdb too, so every write and flush LMDB makes
   to the store's data file is seen here. After each of them the test keeps
   what the disk could hold if the power failed right then: the file as of
   its last flush (and the writes made through an O_DSYNC descriptor),
   plus any of the writes made since, in any combination, since a disk
   writes back in the order it likes. Each such image is then opened as a
   store and must be sound and hold exactly the first k deliveries. */

#define _GNU_SOURCE 1

#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "str.h"
#include "unlink-directory.h"
#include "test-common.h"
#include "loopguard-store.h"
#include "loopguard-compat.h"

#include <stdio.h>
#include <stdlib.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/uio.h>

#define TEST_NOW 1000000
#define TEST_DELIVERIES 12
/* windows written before the deliveries, so that the tree has branch
   pages, and by each delivery besides its own, so that it changes several
   pages */
#define TEST_PREFILL 600
#define TEST_PADDING 20
/* a point with more unflushed writes than this gets the none, all, each
   alone and all but each combinations instead of every one */
#define TEST_MAX_ALL_COMBINATIONS 8

struct power_write {
	uoff_t offset;
	buffer_t *data;
};

/* What a power failure at one moment could leave on the disk. */
struct power_point {
	/* index into power.durables */
	unsigned int durable;
	ARRAY(struct power_write) pending;
	/* deliveries committed, and begun to be committed, by then */
	unsigned int committed, committing;
};

static struct {
	bool tracking;
	dev_t dev;
	ino_t ino;
	/* the file's content as of each flush: shared by the points */
	ARRAY(buffer_t *) durables;
	bool durable_changed;
	/* written since the last flush */
	ARRAY(struct power_write) pending;
	ARRAY(struct power_point) points;
	/* every write's data, freed at the end */
	ARRAY(buffer_t *) writes;
	unsigned int committed, committing;
} power;

static const char *test_dir;

static bool power_is_store_fd(int fd)
{
	struct stat st;

	return power.tracking && fstat(fd, &st) == 0 &&
		st.st_dev == power.dev && st.st_ino == power.ino;
}

static buffer_t *power_durable(void)
{
	buffer_t *const *durables;
	unsigned int count;

	durables = array_get(&power.durables, &count);
	return durables[count - 1];
}

static void power_apply(buffer_t *dest, const struct power_write *write)
{
	buffer_write(dest, write->offset, write->data->data,
		     write->data->used);
}

/* The durable content changes: a new version, so that the points taken
   before keep theirs. */
static buffer_t *power_durable_modify(void)
{
	buffer_t *old = power_durable(), *new;

	if (!power.durable_changed)
		return old;
	new = buffer_create_dynamic(default_pool, old->used);
	buffer_append_buf(new, old, 0, SIZE_MAX);
	array_push_back(&power.durables, &new);
	power.durable_changed = FALSE;
	return new;
}

static void power_point_save(void)
{
	struct power_point *point;

	point = array_append_space(&power.points);
	point->durable = array_count(&power.durables) - 1;
	i_array_init(&point->pending, 4);
	array_append_array(&point->pending, &power.pending);
	point->committed = power.committed;
	point->committing = power.committing;
	/* the next change of the durable content must copy it */
	power.durable_changed = TRUE;
}

static void
power_written(int fd, uoff_t offset, const struct iovec *iov, int iovcnt,
	      size_t size)
{
	struct power_write write;
	size_t left = size;
	int i, flags;

	write.offset = offset;
	write.data = buffer_create_dynamic(default_pool, size);
	for (i = 0; i < iovcnt && left > 0; i++) {
		size_t n = I_MIN(iov[i].iov_len, left);

		buffer_append(write.data, iov[i].iov_base, n);
		left -= n;
	}
	array_push_back(&power.writes, &write.data);
	flags = fcntl(fd, F_GETFL);
	if (flags >= 0 && (flags & O_DSYNC) != 0) {
		/* on the disk when the call returns; earlier writes are
		   not made durable by it */
		power_apply(power_durable_modify(), &write);
	} else {
		array_push_back(&power.pending, &write);
	}
	power_point_save();
}

static void power_flushed(void)
{
	const struct power_write *write;
	buffer_t *durable;

	if (array_count(&power.pending) > 0) {
		durable = power_durable_modify();
		array_foreach(&power.pending, write)
			power_apply(durable, write);
		array_clear(&power.pending);
	}
	power_point_save();
}

typedef ssize_t pwrite_func_t(int, const void *, size_t, off_t);

static ssize_t
power_pwrite_call(const char *name, pwrite_func_t **real, int fd,
		  const void *buf, size_t count, off_t offset)
{
	struct iovec iov;
	ssize_t ret;

	if (*real == NULL)
		*real = (pwrite_func_t *)dlsym(RTLD_NEXT, name);
	ret = (*real)(fd, buf, count, offset);
	if (ret > 0 && power_is_store_fd(fd)) {
		iov.iov_base = (void *)buf;
		iov.iov_len = count;
		power_written(fd, offset, &iov, 1, ret);
	}
	return ret;
}

/* With _FILE_OFFSET_BITS=64 the headers name this pwrite64; liblmdb may
   call either name, so both are defined. */
ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
	static pwrite_func_t *real_pwrite64;

	return power_pwrite_call("pwrite64", &real_pwrite64, fd, buf, count,
				 offset);
}

ssize_t power_pwrite(int fd, const void *buf, size_t count, off_t offset)
	__asm__("pwrite");
ssize_t power_pwrite(int fd, const void *buf, size_t count, off_t offset)
{
	static pwrite_func_t *real_pwrite;

	return power_pwrite_call("pwrite", &real_pwrite, fd, buf, count,
				 offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	static ssize_t (*real_writev)(int, const struct iovec *, int);
	off_t offset = -1;
	ssize_t ret;

	if (real_writev == NULL)
		real_writev = dlsym(RTLD_NEXT, "writev");
	if (power_is_store_fd(fd))
		offset = lseek(fd, 0, SEEK_CUR);
	ret = real_writev(fd, iov, iovcnt);
	if (ret > 0 && offset >= 0)
		power_written(fd, offset, iov, iovcnt, ret);
	return ret;
}

ssize_t write(int fd, const void *buf, size_t count)
{
	static ssize_t (*real_write)(int, const void *, size_t);
	struct iovec iov;
	off_t offset = -1;
	ssize_t ret;

	if (real_write == NULL)
		real_write = dlsym(RTLD_NEXT, "write");
	if (power_is_store_fd(fd))
		offset = lseek(fd, 0, SEEK_CUR);
	ret = real_write(fd, buf, count);
	if (ret > 0 && offset >= 0) {
		iov.iov_base = (void *)buf;
		iov.iov_len = count;
		power_written(fd, offset, &iov, 1, ret);
	}
	return ret;
}

int fdatasync(int fd)
{
	static int (*real_fdatasync)(int);
	int ret;

	if (real_fdatasync == NULL)
		real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
	ret = real_fdatasync(fd);
	if (ret == 0 && power_is_store_fd(fd))
		power_flushed();
	return ret;
}

int fsync(int fd)
{
	static int (*real_fsync)(int);
	int ret;

	if (real_fsync == NULL)
		real_fsync = dlsym(RTLD_NEXT, "fsync");
	ret = real_fsync(fd);
	if (ret == 0 && power_is_store_fd(fd))
		power_flushed();
	return ret;
}

/*
 * The deliveries
 */

static struct loopguard_store_settings
test_settings(const char *path, bool sync)
{
	struct loopguard_store_settings set;

	i_zero(&set);
	set.location = path;
	set.max_size = 64 * 1024 * 1024;
	set.sync = sync;
	set.log_size = 0;
	return set;
}

static void
test_window(struct loopguard_store *store, const char *key, unsigned int n)
{
	static const struct loopguard_window_params params = {
		.count = 23, .period = 43200 };
	unsigned char hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];
	struct loopguard_window_result result;
	const char *error;

	memset(hash, 0, sizeof(hash));
	memcpy(hash, &n, sizeof(n));
	if (loopguard_store_window_check(store, "", key, &params, hash,
					 TEST_NOW, TRUE, &result,
					 &error) < 0)
		i_fatal("window %s: %s", key, error);
}

static void test_deliver(struct loopguard_store *store, unsigned int n)
{
	struct loopguard_store_delivery *delivery;
	const char *error;
	unsigned int i;

	if (loopguard_store_delivery_begin(store, &delivery, &error) < 0)
		i_fatal("delivery %u: %s", n, error);
	T_BEGIN {
		test_window(store, t_strdup_printf("delivery%02u", n), n);
		for (i = 0; i < TEST_PADDING; i++) {
			test_window(store, t_strdup_printf(
				"padding%u-%u", (i * 7919) % 1000, n), n);
		}
	} T_END;
	power.committing++;
	if (loopguard_store_delivery_commit(&delivery, &error) < 0)
		i_fatal("commit %u: %s", n, error);
	power.committed++;
}

/* The file as it is, as the first durable content. */
static void power_start(const char *path)
{
	buffer_t *durable;
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0)
		i_fatal("open(%s) failed: %m", path);
	durable = buffer_create_dynamic(default_pool, st.st_size);
	if (pread(fd, buffer_append_space_unsafe(durable, st.st_size),
		  st.st_size, 0) != st.st_size)
		i_fatal("pread(%s) failed: %m", path);
	i_close_fd(&fd);
	array_push_back(&power.durables, &durable);
	power.durable_changed = TRUE;
	power.dev = st.st_dev;
	power.ino = st.st_ino;
	power.tracking = TRUE;
}

static void test_run_deliveries(const char *path, bool sync)
{
	struct loopguard_store_settings set = test_settings(path, sync);
	struct loopguard_store_delivery *delivery;
	struct loopguard_store *store;
	const char *error;
	unsigned int i;

	if (loopguard_store_open(&set, &store, &error) < 0 ||
	    loopguard_store_delivery_begin(store, &delivery, &error) < 0)
		i_fatal("open %s: %s", path, error);
	for (i = 0; i < TEST_PREFILL; i++) T_BEGIN {
		test_window(store, t_strdup_printf("prefill%u", i), i);
	} T_END;
	if (loopguard_store_delivery_commit(&delivery, &error) < 0)
		i_fatal("commit %s: %s", path, error);
	loopguard_store_close(&store);
	/* flushed as a whole, so that the power failures begin from here */
	set = test_settings(path, TRUE);
	if (loopguard_store_open(&set, &store, &error) < 0)
		i_fatal("open %s: %s", path, error);
	test_deliver(store, 0);
	loopguard_store_close(&store);

	power.committed = power.committing = 1;
	power_start(path);
	set = test_settings(path, sync);
	if (loopguard_store_open(&set, &store, &error) < 0)
		i_fatal("open %s: %s", path, error);
	for (i = 1; i < TEST_DELIVERIES; i++)
		test_deliver(store, i);
	loopguard_store_close(&store);
	power.tracking = FALSE;
}

/*
 * The images
 */

struct test_count_context {
	/* bit n: delivery n is there */
	unsigned int deliveries;
	unsigned int prefill;
};

static int
test_count_window(const struct loopguard_store_window *window, void *context)
{
	struct test_count_context *ctx = context;
	unsigned int n;

	if (str_begins_with(window->key, "delivery") &&
	    str_to_uint(window->key + strlen("delivery"), &n) == 0 &&
	    n < TEST_DELIVERIES)
		ctx->deliveries |= 1U << n;
	else if (str_begins_with(window->key, "prefill"))
		ctx->prefill++;
	return 0;
}

/* Opens one image as a store. Returns the number of deliveries in it, when
   they are the first ones without a gap, or -1 with *problem_r. */
static int
test_image(const char *dir, const buffer_t *image, const char **problem_r)
{
	const char *path = t_strconcat(dir, "/image", NULL);
	struct loopguard_store_settings set = test_settings(path, TRUE);
	struct test_count_context ctx;
	struct loopguard_store *store;
	const char *error;
	struct stat st;
	int fd, k;

	(void)unlink(path);
	(void)unlink(t_strconcat(path, "-lock", NULL));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || pwrite(fd, image->data, image->used, 0) !=
	    (ssize_t)image->used)
		i_fatal("write(%s) failed: %m", path);
	i_close_fd(&fd);

	i_zero(&ctx);
	if (loopguard_store_open(&set, &store, &error) < 0) {
		*problem_r = t_strdup_printf("open: %s", error);
		return -1;
	}
	if (loopguard_store_window_iterate(store, NULL, TEST_NOW,
					   test_count_window, &ctx,
					   &error) < 0) {
		*problem_r = t_strdup_printf("iterate: %s", error);
		loopguard_store_close(&store);
		return -1;
	}
	loopguard_store_close(&store);
	if (stat(t_strconcat(path, ".broken", NULL), &st) == 0) {
		*problem_r = "moved aside as damaged";
		(void)unlink(t_strconcat(path, ".broken", NULL));
		return -1;
	}
	if (ctx.prefill != TEST_PREFILL) {
		*problem_r = t_strdup_printf("%u of %u earlier windows",
					     ctx.prefill, TEST_PREFILL);
		return -1;
	}
	for (k = 0; k < TEST_DELIVERIES && (ctx.deliveries & (1U << k)) != 0;
	     k++) ;
	if ((ctx.deliveries >> k) != 0) {
		*problem_r = t_strdup_printf("deliveries 0x%x: a gap",
					     ctx.deliveries);
		return -1;
	}
	return k;
}

/* Every combination of the point's unflushed writes, or with many of them
   none, all, each alone and all but each: as bit masks. */
static void
test_point_combinations(unsigned int pending, ARRAY_TYPE(uint64_t) *masks)
{
	uint64_t all, mask;
	unsigned int i;

	if (pending <= TEST_MAX_ALL_COMBINATIONS) {
		for (mask = 0; mask < (1ULL << pending); mask++)
			array_push_back(masks, &mask);
		return;
	}
	all = pending >= 64 ? UINT64_MAX : (1ULL << pending) - 1;
	mask = 0;
	array_push_back(masks, &mask);
	array_push_back(masks, &all);
	for (i = 0; i < I_MIN(pending, 64); i++) {
		mask = 1ULL << i;
		array_push_back(masks, &mask);
		mask = all & ~mask;
		array_push_back(masks, &mask);
	}
}

static void test_power_loss(bool sync)
{
	const char *dir = t_strdup_printf("%s/%s", test_dir,
					  sync ? "sync" : "nosync");
	const struct power_point *point;
	const struct power_write *writes;
	unsigned int images = 0, lost_last = 0, failures = 0, pending;
	unsigned int max_pending = 0, i;
	ARRAY_TYPE(uint64_t) masks;
	const uint64_t *mask;
	buffer_t *image;
	const char *problem;
	int k;

	test_begin(t_strdup_printf("power loss at every write: sync=%s",
				   sync ? "yes" : "no"));
	if (mkdir(dir, 0700) < 0)
		i_fatal("mkdir(%s) failed: %m", dir);
	i_array_init(&power.durables, 64);
	i_array_init(&power.pending, 16);
	i_array_init(&power.points, 128);
	i_array_init(&power.writes, 128);
	power.committed = power.committing = 0;
	test_run_deliveries(t_strconcat(dir, "/store", NULL), sync);

	/* the interposed calls saw LMDB's writes and flushes */
	test_assert(array_count(&power.points) > TEST_DELIVERIES * 2);
	image = buffer_create_dynamic(default_pool, 256 * 1024);
	t_array_init(&masks, 64);
	array_foreach(&power.points, point) {
		writes = array_get(&point->pending, &pending);
		max_pending = I_MAX(max_pending, pending);
		array_clear(&masks);
		test_point_combinations(pending, &masks);
		array_foreach(&masks, mask) T_BEGIN {
			buffer_set_used_size(image, 0);
			buffer_append_buf(image, array_idx_elem(
				&power.durables, point->durable), 0, SIZE_MAX);
			for (i = 0; i < pending && i < 64; i++) {
				if ((*mask & (1ULL << i)) != 0)
					power_apply(image, &writes[i]);
			}
			images++;
			k = test_image(dir, image, &problem);
			if (k >= 0 && (unsigned int)k > point->committing)
				problem = "a delivery not yet committed";
			else if (k >= 0 && (unsigned int)k +
				 (sync ? 0 : 1) < point->committed)
				problem = "a committed delivery lost";
			else if (k >= 0)
				problem = NULL;
			if (k >= 0 && (unsigned int)k < point->committed)
				lost_last++;
			if (problem != NULL && failures++ < 5) {
				i_error("power loss after write %u of the "
					"deliveries (%u committed), mask "
					"0x%llx: %d deliveries: %s",
					(unsigned int)array_foreach_idx(&power.points,
								       point),
					point->committed,
					(unsigned long long)*mask, k, problem);
			}
		} T_END;
	}
	test_assert(failures == 0);
	/* the failures this guards against came into view */
	test_assert(max_pending > 0);
	test_assert(images > array_count(&power.points));
	/* with sync=yes, nothing committed is ever missing */
	test_assert(!sync || lost_last == 0);
	printf("%u images from %u points, at most %u unflushed writes, "
	       "%u missing the last commit\n", images,
	       array_count(&power.points), max_pending, lost_last);

	buffer_free(&image);
	array_foreach(&power.points, point) {
		struct power_point *p = (struct power_point *)point;

		array_free(&p->pending);
	}
	for (i = 0; i < array_count(&power.writes); i++)
		buffer_free(array_idx_modifiable(&power.writes, i));
	for (i = 0; i < array_count(&power.durables); i++)
		buffer_free(array_idx_modifiable(&power.durables, i));
	array_free(&power.durables);
	array_free(&power.pending);
	array_free(&power.points);
	array_free(&power.writes);
	test_end();
}

static void test_power_loss_sync(void)
{
	test_power_loss(TRUE);
}

static void test_power_loss_nosync(void)
{
	test_power_loss(FALSE);
}

static void test_remove_dir(void)
{
	const char *error;

	if (unlink_directory(test_dir, UNLINK_DIRECTORY_FLAG_RMDIR,
			     &error) < 0)
		i_error("%s", error);
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_power_loss_sync,
		test_power_loss_nosync,
		test_remove_dir,
		NULL
	};
	char template[] = "/tmp/test-loopguard-power.XXXXXX";

	if (mkdtemp(template) == NULL) {
		fprintf(stderr, "mkdtemp() failed: %m\n");
		return 1;
	}
	test_dir = template;
	return test_run(test_functions);
}
