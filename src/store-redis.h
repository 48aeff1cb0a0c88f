#ifndef LOOPGUARD_STORE_REDIS_H
#define LOOPGUARD_STORE_REDIS_H

/* What the Redis store shows beyond the store API, for its tests and
   benchmarks. */

struct loopguard_store;

/* Round trips to Redis waited for by calls on store since it was opened
   (replies read later, at the next call, are no round trip of their
   own). */
unsigned int loopguard_store_redis_round_trips(struct loopguard_store *store);

#endif
