/* Benchmark helper: fills a loopguard store with looptest "duplicate"
   fingerprints (SEEN records), as if that many distinct messages had been
   delivered within the last :seconds. Used by bench/bench-vs-duplicate.

   Usage: bench-fill-seen PATH COUNT [SECONDS]

   Each record: handle "", key = 64 hex digits (a fingerprint's size),
   payload = last-seen time (8 bytes, big-endian) = now, expires = now +
   SECONDS (default 86400). Written without fsync; the file is created 0600
   (the caller chowns it to the mail user). */

#include "lib.h"
#include "buffer.h"
#include "hex-binary.h"
#include "sha2.h"

#include "loopguard-db.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct fill_update {
	unsigned int seconds;
};

static bool
fill_update(const struct loopguard_db_record *old ATTR_UNUSED, time_t now,
	    buffer_t *new_payload, time_t *expires_r, void *context)
{
	struct fill_update *update = context;
	uint64_t last_seen = (uint64_t)now;
	unsigned int i;

	for (i = 0; i < sizeof(last_seen); i++) {
		buffer_append_c(new_payload,
				(last_seen >> (8 * (sizeof(last_seen) - 1 - i)))
				& 0xff);
	}
	*expires_r = now + update->seconds;
	return TRUE;
}

int main(int argc, char *argv[])
{
	struct loopguard_db_settings set;
	struct loopguard_db *db;
	struct fill_update update;
	unsigned char digest[SHA256_RESULTLEN];
	const char *error, *seed;
	unsigned int i, count;
	time_t now = time(NULL);

	if (argc < 3) {
		fprintf(stderr, "Usage: %s PATH COUNT [SECONDS]\n", argv[0]);
		return 2;
	}
	lib_init();
	count = (unsigned int)strtoul(argv[2], NULL, 10);
	i_zero(&update);
	update.seconds = argc > 3 ?
		(unsigned int)strtoul(argv[3], NULL, 10) : 86400;

	i_zero(&set);
	set.path = argv[1];
	/* the plugin's default sieve_loopguard_db_max_size */
	set.max_size = 64 * 1024 * 1024;
	set.sync = FALSE;
	set.log_size = 0;
	if (loopguard_db_open(&set, &db, &error) < 0)
		i_fatal("open %s: %s", argv[1], error);

	for (i = 0; i < count; i++) T_BEGIN {
		/* distinct, well-spread keys like real fingerprints */
		seed = t_strdup_printf("bench-fill-seen %u %ld", i, (long)now);
		sha256_get_digest(seed, strlen(seed), digest);
		if (loopguard_db_update(db, LOOPGUARD_DB_KIND_SEEN, "",
					binary_to_hex(digest, sizeof(digest)),
					now, fill_update, &update,
					&error) < 0)
			i_fatal("update %u: %s", i, error);
	} T_END;
	loopguard_db_close(&db);
	printf("%u SEEN records written to %s (expire in %u s)\n",
	       count, argv[1], update.seconds);
	lib_deinit();
	return 0;
}
