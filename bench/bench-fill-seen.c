/* Benchmark helper: fills a loopguard store with looptest "duplicate"
   fingerprints, through loopguard_store_fingerprint_check(), as if that
   many distinct messages had been delivered within the last :seconds.
   Used by bench/bench-vs-duplicate.

   Usage: bench-fill-seen PATH COUNT [SECONDS]

   Each fingerprint is stored as looptest stores it (in LMDB a compact
   record: the first 16 bytes of the fingerprint, the last-seen time =
   now in 4 bytes), expiring at now + SECONDS (default 86400). Written
   without fsync; the file is created 0600 (the caller chowns it to the
   mail user). */

#include "lib.h"
#include "buffer.h"
#include "sha2.h"

#include "loopguard-store.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char *argv[])
{
	struct loopguard_store_settings set;
	struct loopguard_store *store;
	unsigned char digest[SHA256_RESULTLEN];
	const char *error, *seed;
	unsigned int i, count, seconds;
	time_t now = time(NULL);
	bool seen;

	if (argc < 3) {
		fprintf(stderr, "Usage: %s PATH COUNT [SECONDS]\n", argv[0]);
		return 2;
	}
	lib_init();
	count = (unsigned int)strtoul(argv[2], NULL, 10);
	seconds = argc > 3 ?
		(unsigned int)strtoul(argv[3], NULL, 10) : 86400;

	i_zero(&set);
	set.location = argv[1];
	/* the plugin's default sieve_loopguard_db_max_size */
	set.max_size = 64 * 1024 * 1024;
	set.sync = FALSE;
	set.log_size = 0;
	if (loopguard_store_open(&set, &store, &error) < 0)
		i_fatal("open %s: %s", argv[1], error);

	for (i = 0; i < count; i++) T_BEGIN {
		/* distinct, well-spread keys like real fingerprints */
		seed = t_strdup_printf("bench-fill-seen %u %ld", i, (long)now);
		sha256_get_digest(seed, strlen(seed), digest);
		if (loopguard_store_fingerprint_check(store, digest, seconds,
						      now, &seen, &error) < 0)
			i_fatal("update %u: %s", i, error);
	} T_END;
	loopguard_store_close(&store);
	printf("%u fingerprints written to %s (expire in %u s)\n",
	       count, argv[1], seconds);
	lib_deinit();
	return 0;
}
