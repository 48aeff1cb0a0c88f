/* Benchmark: the time of one delivery's store work (open, one ratelimit
   update with a new 4 KB key, one log entry, close) against a store full
   of live records and against an empty one, side by side in one run. */

#include "lib.h"
#include "str.h"
#include "time-util.h"

#include "loopguard-db.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BENCH_MAX_SIZE (64 * 1024 * 1024)
#define BENCH_KEY_SIZE 4096

static bool
bench_update(const struct loopguard_db_record *old ATTR_UNUSED,
	     time_t now, buffer_t *new_payload, time_t *expires_r,
	     void *context ATTR_UNUSED)
{
	buffer_append(new_payload, "0123456789abcdef", 16);
	*expires_r = now + 43200;
	return TRUE;
}

static const char *bench_key(const char *prefix, unsigned int n)
{
	string_t *key = t_str_new(BENCH_KEY_SIZE + 32);

	str_printfa(key, "%s%08u ", prefix, n);
	while (str_len(key) < BENCH_KEY_SIZE)
		str_append_c(key, 'x');
	return str_c(key);
}

/* One delivery; returns the store's result of the update. */
static int
bench_delivery(const char *path, const char *key, time_t now)
{
	struct loopguard_db_settings set;
	struct loopguard_db_event event;
	struct loopguard_db *db;
	const char *error;
	int ret;

	i_zero(&set);
	set.path = path;
	set.max_size = BENCH_MAX_SIZE;
	set.log_size = 1000;
	if (loopguard_db_open(&set, &db, &error) < 0)
		i_fatal("open %s: %s", path, error);
	ret = loopguard_db_update(db, LOOPGUARD_DB_KIND_RATE, "", key, now,
				  bench_update, NULL, &error);
	if (ret == -1)
		i_fatal("update: %s", error);
	i_zero(&event);
	event.time = now;
	event.test = "ratelimit";
	event.key = key;
	if (loopguard_db_log_append(db, &event, &error) == -1)
		i_fatal("log: %s", error);
	loopguard_db_close(&db);
	return ret;
}

int main(int argc, char *argv[])
{
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	unsigned int rounds = argc > 2 ? atoi(argv[2]) : 300;
	const char *full = t_strdup_printf("%s/bench-full", dir);
	const char *empty = t_strdup_printf("%s/bench-empty", dir);
	long long usecs_full = 0, usecs_empty = 0;
	struct timeval start, end;
	time_t now = time(NULL);
	unsigned int i, filled = 0;
	int ret = 0;

	lib_init();
	/* as the Sieve plugin does */
	loopguard_db_keep_idle(TRUE);
	for (i = 0; ret != LOOPGUARD_DB_FULL; i++) T_BEGIN {
		ret = bench_delivery(full, bench_key("fill", i), now);
		if (ret == 0)
			filled++;
	} T_END;
	printf("full store: %u live records with distinct %u-byte keys\n",
	       filled, BENCH_KEY_SIZE);

	/* alternating, so that load on the machine hits both alike */
	for (i = 0; i < rounds; i++) T_BEGIN {
		i_gettimeofday(&start);
		(void)bench_delivery(full, bench_key("new", i), now);
		i_gettimeofday(&end);
		usecs_full += timeval_diff_usecs(&end, &start);
		i_gettimeofday(&start);
		(void)bench_delivery(empty, bench_key("new", i % 10), now);
		i_gettimeofday(&end);
		usecs_empty += timeval_diff_usecs(&end, &start);
	} T_END;
	printf("per delivery (open, ratelimit update, log entry, close):\n");
	printf("  empty store %8.3f ms\n", usecs_empty / 1000.0 / rounds);
	printf("  full store  %8.3f ms  (%.2fx)\n",
	       usecs_full / 1000.0 / rounds,
	       (double)usecs_full / I_MAX(usecs_empty, 1));
	loopguard_db_keep_idle(FALSE);
	lib_deinit();
	return 0;
}
