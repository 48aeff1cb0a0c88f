/* What the sieve_loopguard_* settings mean, however they were read. */

#include "lib.h"

#include "loopguard-settings.h"

void loopguard_settings_apply_maxima(struct loopguard_settings *set)
{
	if (set->max_count > 0) {
		set->ratelimit_count = I_MIN(set->ratelimit_count,
					     set->max_count);
	}
	if (set->max_period > 0) {
		set->ratelimit_period = I_MIN(set->ratelimit_period,
					      set->max_period);
		set->ratelimit_lock = I_MIN(set->ratelimit_lock,
					    set->max_period);
		set->duplicate_period = I_MIN(set->duplicate_period,
					      set->max_period);
	}
}
