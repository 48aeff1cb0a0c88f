/* Benchmark: looptest's duplicate check against a store holding a million
   remembered fingerprints and against an empty one, side by side in one
   run, and the size of the full one's file.

   Usage: bench-fingerprints DIR [COUNT [ROUNDS]]

   A delivery's store work as the plugin does it: open, the delivery,
   loopguard_store_fingerprint_check(), commit (flushed), close. */

#include "lib.h"
#include "sha2.h"
#include "time-util.h"

#include "loopguard-store.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/stat.h>

/* the plugin's default sieve_loopguard_db_max_size */
#define BENCH_MAX_SIZE (64 * 1024 * 1024)
#define BENCH_PERIOD (12 * 3600)
#define BENCH_BATCH 1000

static int
bench_check(struct loopguard_store *store, const char *tag, unsigned int n,
	    time_t now, const char **error_r)
{
	unsigned char digest[SHA256_RESULTLEN];
	const char *seed = t_strdup_printf("%s %u", tag, n);
	bool seen;

	/* well spread, as real fingerprints are */
	sha256_get_digest(seed, strlen(seed), digest);
	return loopguard_store_fingerprint_check(store, digest, BENCH_PERIOD,
						 now, &seen, error_r);
}

static void
bench_open(const char *path, bool sync, struct loopguard_store **store_r,
	   struct loopguard_store_delivery **delivery_r)
{
	struct loopguard_store_settings set;
	const char *error;

	i_zero(&set);
	set.location = path;
	set.max_size = BENCH_MAX_SIZE;
	set.sync = sync;
	set.log_size = 1000;
	if (loopguard_store_open(&set, store_r, &error) < 0 ||
	    loopguard_store_delivery_begin(*store_r, delivery_r, &error) < 0)
		i_fatal("open %s: %s", path, error);
}

static void bench_close(struct loopguard_store **store,
			struct loopguard_store_delivery **delivery)
{
	const char *error;

	if (loopguard_store_delivery_commit(delivery, &error) < 0)
		i_fatal("commit: %s", error);
	loopguard_store_close(store);
}

/* count fingerprints, BENCH_BATCH per delivery, not flushed */
static void bench_fill(const char *path, unsigned int count, time_t now)
{
	struct loopguard_store_delivery *delivery;
	struct loopguard_store *store;
	const char *error = NULL;
	unsigned int i = 0, start, end;
	int ret = 0;

	while (i < count) {
		bench_open(path, FALSE, &store, &delivery);
		start = i;
		end = I_MIN(i + BENCH_BATCH, count);
		for (; i < end && ret == 0; i++) T_BEGIN {
			ret = bench_check(store, "fill", i, now, &error);
			if (ret != 0)
				error = t_strdup(error);
		} T_END;
		if (ret != 0)
			i--;
		bench_close(&store, &delivery);
		if (ret == LOOPGUARD_STORE_FULL)
			i_fatal("the store is full after %u fingerprints", i);
		/* -1 with the map full: it grows once the delivery ended,
		   and the batch goes on from the failed one */
		if (ret < 0 && i == start)
			i_fatal("update: %s", error);
		ret = 0;
	}
}

static long long
bench_delivery(const char *path, const char *tag, unsigned int n, time_t now)
{
	struct loopguard_store_delivery *delivery;
	struct loopguard_store *store;
	struct timeval start, end;
	const char *error;

	i_gettimeofday(&start);
	bench_open(path, TRUE, &store, &delivery);
	if (bench_check(store, tag, n, now, &error) != 0)
		i_fatal("update %s: %s", path, error);
	bench_close(&store, &delivery);
	i_gettimeofday(&end);
	return timeval_diff_usecs(&end, &start);
}

int main(int argc, char *argv[])
{
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	unsigned int count = argc > 2 ? atoi(argv[2]) : 1000000;
	unsigned int rounds = argc > 3 ? atoi(argv[3]) : 300;
	const char *big = t_strdup_printf("%s/bench-fingerprints-big", dir);
	const char *empty = t_strdup_printf("%s/bench-fingerprints-empty", dir);
	long long usecs_big = 0, usecs_empty = 0;
	time_t now = time(NULL);
	struct stat st;
	unsigned int i;

	lib_init();
	/* as the Sieve plugin does */
	loopguard_store_keep_idle(TRUE);
	bench_fill(big, count, now);
	if (stat(big, &st) < 0)
		i_fatal("stat(%s) failed: %m", big);
	printf("%u fingerprints: file of %.1f MB (%.1f bytes each), "
	       "max size %u MiB\n", count, st.st_size / 1e6,
	       (double)st.st_size / I_MAX(count, 1),
	       BENCH_MAX_SIZE / (1024 * 1024));

	/* alternating, so that load on the machine hits both alike */
	for (i = 0; i < rounds; i++) T_BEGIN {
		usecs_big += bench_delivery(big, "new", i, now);
		usecs_empty += bench_delivery(empty, "new", i, now);
	} T_END;
	printf("per delivery (open, duplicate check, flushed commit, "
	       "close):\n");
	printf("  empty store        %8.3f ms\n",
	       usecs_empty / 1000.0 / rounds);
	printf("  %u fingerprints %8.3f ms  (%.2fx)\n", count,
	       usecs_big / 1000.0 / rounds,
	       (double)usecs_big / I_MAX(usecs_empty, 1));
	loopguard_store_keep_idle(FALSE);
	lib_deinit();
	return 0;
}
