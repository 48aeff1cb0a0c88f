/* Benchmark helper: fills a loopguard store with looptest "duplicate"
   fingerprints, through loopguard_store_fingerprint_check(), as if that
   many distinct messages had been delivered within the last :seconds.
   Used by bench/bench-vs-duplicate.

   Usage: bench-fill-seen PATH COUNT [SECONDS]

   Each fingerprint is stored as looptest stores it (in LMDB a compact
   record: the first 16 bytes of the fingerprint, the last-seen time =
   now in 4 bytes), expiring at now + SECONDS (default 86400). Written
   a thousand per delivery, not flushed; the file is created 0600 (the
   caller chowns it to the mail user). */

#include "lib.h"

#include "bench-store.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char *argv[])
{
	unsigned int count, seconds;
	time_t now = time(NULL);

	if (argc < 3) {
		fprintf(stderr, "Usage: %s PATH COUNT [SECONDS]\n", argv[0]);
		return 2;
	}
	lib_init();
	count = (unsigned int)strtoul(argv[2], NULL, 10);
	seconds = argc > 3 ?
		(unsigned int)strtoul(argv[3], NULL, 10) : 86400;
	/* distinct from run to run, like real fingerprints */
	bench_store_fill_fingerprints(argv[1], t_strdup_printf(
		"bench-fill-seen %ld", (long)now), count, seconds, now);
	printf("%u fingerprints written to %s (expire in %u s)\n",
	       count, argv[1], seconds);
	lib_deinit();
	return 0;
}
