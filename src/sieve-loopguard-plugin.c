/* The Sieve plugin: registers the looptest and ratelimit extensions. */

#include "lib.h"

#include "sieve-common.h"
#include "sieve-extensions.h"

#include "ext-looptest-common.h"
#include "ext-ratelimit-common.h"
#include "sieve-loopguard-plugin.h"

struct sieve_loopguard_plugin_context {
	const struct sieve_extension *ext_looptest;
	const struct sieve_extension *ext_ratelimit;
};

const char *sieve_loopguard_plugin_version = PIGEONHOLE_ABI_VERSION;

void sieve_loopguard_plugin_load(struct sieve_instance *svinst,
				 void **context)
{
	struct sieve_loopguard_plugin_context *pctx;

	pctx = i_new(struct sieve_loopguard_plugin_context, 1);
	pctx->ext_looptest = sieve_extension_register(
		svinst, &looptest_extension, TRUE);
	pctx->ext_ratelimit = sieve_extension_register(
		svinst, &ratelimit_extension, TRUE);

	e_debug(svinst->event, "Sieve loopguard plugin %s loaded",
		LOOPGUARD_VERSION);
	*context = pctx;
}

void sieve_loopguard_plugin_unload(struct sieve_instance *svinst ATTR_UNUSED,
				   void *context)
{
	struct sieve_loopguard_plugin_context *pctx = context;

	sieve_extension_unregister(pctx->ext_looptest);
	sieve_extension_unregister(pctx->ext_ratelimit);
	i_free(pctx);
}

void sieve_loopguard_plugin_init(void)
{
	/* Nothing: all state belongs to a Sieve instance. */
}

void sieve_loopguard_plugin_deinit(void)
{
	/* Nothing */
}
