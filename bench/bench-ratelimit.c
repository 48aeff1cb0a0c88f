/* Benchmark: the cost of one ratelimit check-and-record against a store
   holding 1k, 100k and 1M distinct keys, with sync on and off. */

#include "lib.h"
#include "buffer.h"
#include "str.h"
#include "time-util.h"

#include "loopguard-store.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void bench_key(unsigned int n, string_t *key)
{
	str_truncate(key, 0);
	str_printfa(key, "sender%u@example%u.com", n, n % 977);
}

static struct loopguard_store *bench_open(const char *path, bool sync)
{
	struct loopguard_store_settings set;
	struct loopguard_store *store;
	const char *error;

	i_zero(&set);
	set.location = path;
	set.max_size = 4ULL * 1024 * 1024 * 1024;
	set.sync = sync;
	set.log_size = 0;
	if (loopguard_store_open(&set, &store, &error) < 0)
		i_fatal("open %s: %s", path, error);
	return store;
}

static void
bench_record(struct loopguard_store *store, unsigned int n, unsigned int seq,
	     time_t now)
{
	static const struct loopguard_window_params params = {
		.count = 23, .period = 43200 };
	unsigned char hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];
	struct loopguard_window_result result;
	const char *error;
	string_t *key = t_str_new(64);

	i_zero(&hash);
	memcpy(hash, &seq, sizeof(seq));
	bench_key(n, key);
	if (loopguard_store_window_check(store, "", str_c(key), &params, hash,
					 now, TRUE, &result, &error) < 0)
		i_fatal("update: %s", error);
}

/* ops records of random keys, each a new message (bench_fill's messages
   are numbered below 1000000) */
static void
bench_records(struct loopguard_store *store, unsigned int keys,
	      unsigned int ops, time_t now)
{
	static unsigned int seq = 1000000;
	unsigned int i;

	for (i = 0; i < ops; i++) T_BEGIN {
		bench_record(store, (unsigned int)random() % keys, seq++, now);
	} T_END;
}

/* Returns microseconds per operation over ops random keys, measured after
   as many untimed ones on the same handle, so that every row is measured
   warm: without them the first row of the run also paid for the
   process's and the new file's first steps. */
static double
bench_measure(const char *path, unsigned int keys, unsigned int ops,
	      bool sync, time_t now)
{
	struct loopguard_store *store = bench_open(path, sync);
	struct timeval start, end;

	bench_records(store, keys, ops, now);
	i_gettimeofday(&start);
	bench_records(store, keys, ops, now);
	i_gettimeofday(&end);
	loopguard_store_close(&store);
	long long usecs = timeval_diff_usecs(&end, &start);

	return (double)usecs / ops;
}

static void bench_fill(const char *path, unsigned int keys, time_t now)
{
	struct loopguard_store *store = bench_open(path, FALSE);
	unsigned int i;

	for (i = 0; i < keys; i++) T_BEGIN {
		bench_record(store, i, i, now);
	} T_END;
	loopguard_store_close(&store);
}

int main(int argc, char *argv[])
{
	static const unsigned int sizes[] = { 1000, 100000, 1000000 };
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	unsigned int ops_nosync = argc > 2 ? atoi(argv[2]) : 20000;
	unsigned int ops_sync = argc > 3 ? atoi(argv[3]) : 300;
	double nosync[N_ELEMENTS(sizes)], sync[N_ELEMENTS(sizes)];
	time_t now = time(NULL);
	unsigned int i;

	lib_init();
	srandom(1);
	printf("ratelimit check-and-record, one write transaction each, "
	       "after as many untimed\n");
	printf("%10s %14s %14s\n", "keys", "nosync us/op", "sync us/op");
	for (i = 0; i < N_ELEMENTS(sizes); i++) {
		const char *path = t_strdup_printf("%s/bench-%u.lmdb", dir,
						   sizes[i]);

		(void)unlink(path);
		(void)unlink(t_strconcat(path, "-lock", NULL));
		bench_fill(path, sizes[i], now);
		nosync[i] = bench_measure(path, sizes[i], ops_nosync, FALSE,
					  now);
		sync[i] = bench_measure(path, sizes[i], ops_sync, TRUE, now);
		printf("%10u %14.2f %14.2f\n", sizes[i], nosync[i], sync[i]);
		fflush(stdout);
		(void)unlink(path);
		(void)unlink(t_strconcat(path, "-lock", NULL));
	}
	printf("ratio 1M/1k: nosync %.2f, sync %.2f (goal: under 1.5)\n",
	       nosync[2] / nosync[0], sync[2] / sync[0]);
	lib_deinit();
	return 0;
}
