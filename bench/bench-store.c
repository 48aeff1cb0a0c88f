/* What the store benchmarks share. */

#include "lib.h"
#include "sha2.h"

#include "bench-store.h"

/* fingerprints per delivery while filling */
#define BENCH_STORE_FILL_BATCH 1000

void bench_store_begin(const char *path, bool sync, unsigned int log_size,
		       struct loopguard_store **store_r,
		       struct loopguard_store_delivery **delivery_r)
{
	struct loopguard_store_settings set;
	const char *error;

	i_zero(&set);
	set.location = path;
	set.max_size = BENCH_STORE_MAX_SIZE;
	set.sync = sync;
	set.log_size = log_size;
	if (loopguard_store_open(&set, store_r, &error) < 0 ||
	    loopguard_store_delivery_begin(*store_r, delivery_r, &error) < 0)
		i_fatal("open %s: %s", path, error);
}

void bench_store_end(struct loopguard_store **store,
		     struct loopguard_store_delivery **delivery)
{
	const char *error;

	if (loopguard_store_delivery_commit(delivery, &error) < 0)
		i_fatal("commit: %s", error);
	loopguard_store_close(store);
}

int bench_store_fingerprint(struct loopguard_store *store, const char *tag,
			    unsigned int n, unsigned int period, time_t now,
			    bool *seen_r, const char **error_r)
{
	unsigned char digest[SHA256_RESULTLEN];
	const char *seed = t_strdup_printf("%s %u", tag, n);

	sha256_get_digest(seed, strlen(seed), digest);
	return loopguard_store_fingerprint_check(store, digest, period, now,
						 seen_r, error_r);
}

void bench_store_fill_fingerprints(const char *path, const char *tag,
				   unsigned int count, unsigned int period,
				   time_t now)
{
	struct loopguard_store_delivery *delivery;
	struct loopguard_store *store;
	const char *error = NULL;
	unsigned int i = 0, start, end;
	bool seen;
	int ret = 0;

	while (i < count) {
		bench_store_begin(path, FALSE, 0, &store, &delivery);
		start = i;
		end = I_MIN(i + BENCH_STORE_FILL_BATCH, count);
		for (; i < end && ret == 0; i++) T_BEGIN {
			ret = bench_store_fingerprint(store, tag, i, period,
						      now, &seen, &error);
			if (ret != 0)
				error = t_strdup(error);
		} T_END;
		if (ret != 0)
			i--;
		bench_store_end(&store, &delivery);
		if (ret == LOOPGUARD_STORE_FULL)
			i_fatal("the store is full after %u fingerprints", i);
		/* -1 with the map full: it grows once the delivery ended,
		   and the batch goes on from the failed one */
		if (ret < 0 && i == start)
			i_fatal("update: %s", error);
		ret = 0;
	}
}
