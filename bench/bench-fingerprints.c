/* Benchmark: looptest's duplicate check against a store holding a million
   remembered fingerprints and against an empty one, side by side in one
   run, and the size of the full one's file.

   Usage: bench-fingerprints DIR [COUNT [ROUNDS]]

   A delivery's store work as the plugin does it: open, the delivery,
   loopguard_store_fingerprint_check(), commit (flushed), close. */

#include "lib.h"
#include "time-util.h"

#include "bench-store.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/stat.h>

#define BENCH_PERIOD (12 * 3600)

static long long
bench_delivery(const char *path, const char *tag, unsigned int n, time_t now)
{
	struct loopguard_store_delivery *delivery;
	struct loopguard_store *store;
	struct timeval start, end;
	const char *error;
	bool seen;

	i_gettimeofday(&start);
	bench_store_begin(path, TRUE, 1000, &store, &delivery);
	if (bench_store_fingerprint(store, tag, n, BENCH_PERIOD, now, &seen,
				    &error) != 0)
		i_fatal("update %s: %s", path, error);
	bench_store_end(&store, &delivery);
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
	bench_store_fill_fingerprints(big, "fill", count, BENCH_PERIOD, now);
	if (stat(big, &st) < 0)
		i_fatal("stat(%s) failed: %m", big);
	printf("%u fingerprints: file of %.1f MB (%.1f bytes each), "
	       "max size %u MiB\n", count, st.st_size / 1e6,
	       (double)st.st_size / I_MAX(count, 1),
	       BENCH_STORE_MAX_SIZE / (1024 * 1024));

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
