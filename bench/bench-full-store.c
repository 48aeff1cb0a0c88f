/* Benchmark: the time of one delivery's store work (open, one ratelimit
   update with a new 4 KB key, one log entry, close) against a store full
   of live records and against an empty one, side by side in one run. */

#include "lib.h"
#include "str.h"
#include "time-util.h"

#include "loopguard-store.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BENCH_MAX_SIZE (64 * 1024 * 1024)
#define BENCH_KEY_SIZE 4096

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
	static const struct loopguard_window_params params = {
		.count = 23, .period = 43200 };
	static const unsigned char hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];
	struct loopguard_store_settings set;
	struct loopguard_store_event event;
	struct loopguard_window_result result;
	struct loopguard_store *store;
	const char *error;
	int ret;

	i_zero(&set);
	set.location = path;
	set.max_size = BENCH_MAX_SIZE;
	set.log_size = 1000;
	if (loopguard_store_open(&set, &store, &error) < 0)
		i_fatal("open %s: %s", path, error);
	ret = loopguard_store_window_check(store, "", key, &params, hash, now,
					   TRUE, &result, &error);
	if (ret == -1)
		i_fatal("update: %s", error);
	i_zero(&event);
	event.time = now;
	event.test = "ratelimit";
	event.key = key;
	if (loopguard_store_log_append(store, &event, &error) == -1)
		i_fatal("log: %s", error);
	loopguard_store_close(&store);
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
	loopguard_store_keep_idle(TRUE);
	for (i = 0; ret != LOOPGUARD_STORE_FULL; i++) T_BEGIN {
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
	loopguard_store_keep_idle(FALSE);
	lib_deinit();
	return 0;
}
