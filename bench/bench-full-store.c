/* Benchmark: the time of one delivery's store work (open, one ratelimit
   update with a new 4 KB key, one log entry, close) against a store full
   of live records and against an empty one, side by side in one run. The
   key is stored under its shortened name, as the ratelimit test does.
   Before each measured delivery another process delivers to the same
   store, as the other LMTP processes of a busy server do, so that the
   measured one finds the file changed by someone else. */

#include "lib.h"
#include "str.h"
#include "time-util.h"

#include "bench-store.h"
#include "loopguard-text.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#define BENCH_KEY_SIZE 4096
/* window checks per transaction while filling */
#define BENCH_FILL_BATCH 1000

static const struct loopguard_window_params bench_params = {
	.count = 23, .period = 43200 };
static const unsigned char bench_hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];

static const char *bench_key(const char *prefix, unsigned int n)
{
	string_t *key = t_str_new(BENCH_KEY_SIZE + 32);

	str_printfa(key, "%s%08u ", prefix, n);
	while (str_len(key) < BENCH_KEY_SIZE)
		str_append_c(key, 'x');
	return loopguard_text_stored_name(str_c(key));
}

/* One delivery, in one store transaction as the plugin makes it; returns
   the store's result of the update. */
static int
bench_delivery(const char *path, const char *key, time_t now)
{
	struct loopguard_store_event event;
	struct loopguard_window_result result;
	struct loopguard_store_delivery *delivery;
	struct loopguard_store *store;
	const char *error;
	int ret;

	bench_store_begin(path, FALSE, 1000, &store, &delivery);
	ret = loopguard_store_window_check(store, "", key, &bench_params,
					   bench_hash, now, TRUE, &result,
					   &error);
	if (ret == -1)
		i_fatal("update: %s", error);
	i_zero(&event);
	event.time = now;
	event.test = "ratelimit";
	event.key = key;
	if (loopguard_store_log_append(store, &event, &error) == -1)
		i_fatal("log: %s", error);
	bench_store_end(&store, &delivery);
	return ret;
}

/* Fills the store until it is full, many records per transaction: one
   delivery per record would take the fill many minutes. */
static unsigned int bench_fill(const char *path, time_t now)
{
	struct loopguard_window_result result;
	struct loopguard_store_delivery *delivery;
	struct loopguard_store *store;
	const char *error = NULL;
	unsigned int i, n = 0, batch;
	int ret = 0;

	while (ret != LOOPGUARD_STORE_FULL) {
		bench_store_begin(path, FALSE, 1000, &store, &delivery);
		for (batch = 0, ret = 0;
		     batch < BENCH_FILL_BATCH && ret == 0; batch++) T_BEGIN {
			ret = loopguard_store_window_check(store, "",
				bench_key("fill", n), &bench_params,
				bench_hash, now, TRUE, &result, &error);
			if (ret == 0)
				n++;
			else
				error = t_strdup(error);
		} T_END;
		bench_store_end(&store, &delivery);
		/* A batch stopped by a full map is retried once the map has
		   grown after it; only a first change that fails is final. */
		if (ret == -1 && batch == 1)
			i_fatal("update: %s", error);
		if (ret != 0 && batch > 1)
			ret = 0;
	}
	/* what the deliveries would have logged */
	for (i = 0; i < 1000; i++) T_BEGIN {
		(void)bench_delivery(path, bench_key("fill", i), now);
	} T_END;
	return n;
}

/* A delivery by another process. */
static void bench_other_delivery(const char *path, const char *key, time_t now)
{
	pid_t pid;
	int status;

	if ((pid = fork()) < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		(void)bench_delivery(path, key, now);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) < 0 || status != 0)
		i_fatal("the other delivery failed");
}

/* The time of one delivery right after another process delivered. */
static long long
bench_timed_delivery(const char *path, const char *key, time_t now)
{
	struct timeval start, end;

	bench_other_delivery(path, t_strconcat("other ", key, NULL), now);
	i_gettimeofday(&start);
	(void)bench_delivery(path, key, now);
	i_gettimeofday(&end);
	return timeval_diff_usecs(&end, &start);
}

int main(int argc, char *argv[])
{
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	unsigned int rounds = argc > 2 ? atoi(argv[2]) : 300;
	const char *full = t_strdup_printf("%s/bench-full", dir);
	const char *empty = t_strdup_printf("%s/bench-empty", dir);
	long long usecs_full = 0, usecs_empty = 0;
	time_t now = time(NULL);
	unsigned int i, filled;

	lib_init();
	/* as the Sieve plugin does */
	loopguard_store_keep_idle(TRUE);
	filled = bench_fill(full, now);
	printf("full store: %u live records with distinct %u-byte keys\n",
	       filled, BENCH_KEY_SIZE);

	/* alternating, so that load on the machine hits both alike */
	for (i = 0; i < rounds; i++) T_BEGIN {
		usecs_full += bench_timed_delivery(full, bench_key("new", i),
						   now);
		usecs_empty += bench_timed_delivery(empty,
						    bench_key("new", i % 10),
						    now);
	} T_END;
	printf("per delivery (open, ratelimit update, log entry, close), "
	       "each after another process's delivery:\n");
	printf("  empty store %8.3f ms\n", usecs_empty / 1000.0 / rounds);
	printf("  full store  %8.3f ms  (%.2fx)\n",
	       usecs_full / 1000.0 / rounds,
	       (double)usecs_full / I_MAX(usecs_empty, 1));
	loopguard_store_keep_idle(FALSE);
	lib_deinit();
	return 0;
}
