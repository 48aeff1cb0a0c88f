#ifndef BENCH_STORE_H
#define BENCH_STORE_H

/* What the store benchmarks share: a delivery's store work as the Sieve
   plugin does it, and a store filled with fingerprints. */

#include "loopguard-store.h"

/* the plugin's default sieve_loopguard_db_max_size */
#define BENCH_STORE_MAX_SIZE (64 * 1024 * 1024)

/* Opens the store at path with the default size and begins a delivery. */
void bench_store_begin(const char *path, bool sync, unsigned int log_size,
		       struct loopguard_store **store_r,
		       struct loopguard_store_delivery **delivery_r);
/* Commits the delivery and closes the store. */
void bench_store_end(struct loopguard_store **store,
		     struct loopguard_store_delivery **delivery);

/* looptest's duplicate check of a message whose fingerprint is made from
   tag and n: well spread, as real fingerprints are. Returns what
   loopguard_store_fingerprint_check() does. */
int bench_store_fingerprint(struct loopguard_store *store, const char *tag,
			    unsigned int n, unsigned int period, time_t now,
			    bool *seen_r, const char **error_r);

/* Remembers count fingerprints (tag, 0..count-1) in the store at path,
   many per delivery and not flushed: one delivery each would take a
   million of them hours on a disk that flushes slowly. */
void bench_store_fill_fingerprints(const char *path, const char *tag,
				   unsigned int count, unsigned int period,
				   time_t now);

#endif
