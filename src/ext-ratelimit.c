/* Extension vnd.loopguard.ratelimit
 * ---------------------------------
 *
 * Specification: vendor-defined; doc/extensions/vnd.loopguard.ratelimit.txt
 * Implementation: full
 * Status: experimental
 *
 */

#include "lib.h"

#include "sieve-common.h"
#include "sieve-extensions.h"
#include "sieve-validator.h"

#include "loopguard-runtime.h"
#include "ext-ratelimit-common.h"

static bool
ext_ratelimit_validator_load(const struct sieve_extension *ext,
			     struct sieve_validator *valdtr)
{
	sieve_validator_register_command(valdtr, ext, &tst_ratelimit);
	return TRUE;
}

const struct sieve_extension_def ratelimit_extension = {
	.name = "vnd.loopguard.ratelimit",
	.load = loopguard_context_load,
	.unload = loopguard_context_unload,
	.validator_load = ext_ratelimit_validator_load,
	SIEVE_EXT_DEFINE_OPERATION(tst_ratelimit_operation),
};
