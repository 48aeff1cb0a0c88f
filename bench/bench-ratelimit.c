/* Benchmark: the cost of one ratelimit check-and-record against a store
   holding 1k, 100k and 1M distinct keys, with sync on and off. */

#include "lib.h"
#include "buffer.h"
#include "str.h"
#include "time-util.h"

#include "loopguard-db.h"
#include "loopguard-window.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct bench_update {
	const struct loopguard_window_params *params;
	unsigned char hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];
	struct loopguard_window_result result;
};

static bool
bench_update(const struct loopguard_db_record *old, time_t now,
	     buffer_t *new_payload, time_t *expires_r, void *context)
{
	struct bench_update *update = context;

	return loopguard_window_apply(
		old == NULL ? NULL : old->payload,
		old == NULL ? 0 : old->payload_size, update->params, now,
		update->hash, TRUE, new_payload, expires_r, &update->result);
}

static void bench_key(unsigned int n, string_t *key)
{
	str_truncate(key, 0);
	str_printfa(key, "sender%u@example%u.com", n, n % 977);
}

static struct loopguard_db *bench_open(const char *path, bool sync)
{
	struct loopguard_db_settings set;
	struct loopguard_db *db;
	const char *error;

	i_zero(&set);
	set.path = path;
	set.max_size = 4ULL * 1024 * 1024 * 1024;
	set.sync = sync;
	set.log_size = 0;
	if (loopguard_db_open(&set, &db, &error) < 0)
		i_fatal("open %s: %s", path, error);
	return db;
}

static void
bench_record(struct loopguard_db *db, unsigned int n, unsigned int seq,
	     time_t now)
{
	static const struct loopguard_window_params params = {
		.count = 23, .period = 43200 };
	struct bench_update update;
	const char *error;
	string_t *key = t_str_new(64);

	i_zero(&update);
	update.params = &params;
	memcpy(update.hash, &seq, sizeof(seq));
	bench_key(n, key);
	if (loopguard_db_update(db, LOOPGUARD_DB_KIND_RATE, "", str_c(key),
				now, bench_update, &update, &error) < 0)
		i_fatal("update: %s", error);
}

/* ops records of random keys, each a new message (bench_fill's messages
   are numbered below 1000000) */
static void
bench_records(struct loopguard_db *db, unsigned int keys, unsigned int ops,
	      time_t now)
{
	static unsigned int seq = 1000000;
	unsigned int i;

	for (i = 0; i < ops; i++) T_BEGIN {
		bench_record(db, (unsigned int)random() % keys, seq++, now);
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
	struct loopguard_db *db = bench_open(path, sync);
	struct timeval start, end;

	bench_records(db, keys, ops, now);
	i_gettimeofday(&start);
	bench_records(db, keys, ops, now);
	i_gettimeofday(&end);
	loopguard_db_close(&db);
	long long usecs = timeval_diff_usecs(&end, &start);

	return (double)usecs / ops;
}

static void bench_fill(const char *path, unsigned int keys, time_t now)
{
	struct loopguard_db *db = bench_open(path, FALSE);
	unsigned int i;

	for (i = 0; i < keys; i++) T_BEGIN {
		bench_record(db, i, i, now);
	} T_END;
	loopguard_db_close(&db);
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
