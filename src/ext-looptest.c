/* Extension vnd.loopguard.looptest
 * --------------------------------
 *
 * Specification: vendor-defined; doc/extensions/vnd.loopguard.looptest.txt
 * Implementation: full
 * Status: experimental
 *
 */

#include "lib.h"

#include "sieve-common.h"
#include "sieve-extensions.h"
#include "sieve-validator.h"

#include "loopguard-runtime.h"
#include "ext-looptest-common.h"

static bool
ext_looptest_validator_load(const struct sieve_extension *ext,
			    struct sieve_validator *valdtr)
{
	sieve_validator_register_command(valdtr, ext, &tst_looptest);
	return TRUE;
}

const struct sieve_extension_def looptest_extension = {
	.name = "vnd.loopguard.looptest",
	.load = loopguard_context_load,
	.unload = loopguard_context_unload,
	.validator_load = ext_looptest_validator_load,
	SIEVE_EXT_DEFINE_OPERATION(tst_looptest_operation),
};
