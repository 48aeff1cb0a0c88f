/* The Sieve plugin: registers the looptest and ratelimit extensions. */

/* dladdr() */
#define _GNU_SOURCE

#include "lib.h"

#include <dlfcn.h>

#include "sieve-common.h"
#include "sieve-extensions.h"

#include "loopguard-compat.h"
#include "loopguard-store.h"
#include "ext-looptest-common.h"
#include "ext-ratelimit-common.h"
#include "sieve-loopguard-plugin.h"

struct sieve_loopguard_plugin_context {
	const struct sieve_extension *ext_looptest;
	const struct sieve_extension *ext_ratelimit;
};

const char *sieve_loopguard_plugin_version = PIGEONHOLE_ABI_VERSION;

static bool sieve_loopguard_plugin_resident = FALSE;

/* Pigeonhole unloads its plugins after every delivery. Staying loaded lets
   the users' stores stay open for the next delivery of this process and
   spares loading liblmdb again. Only a resident module may keep stores open
   past its Sieve instance: an unloaded one would leave them mapped. */
static void sieve_loopguard_plugin_stay_loaded(struct sieve_instance *svinst)
{
	Dl_info info;

	if (sieve_loopguard_plugin_resident)
		return;
	if (dladdr((void *)sieve_loopguard_plugin_load, &info) == 0 ||
	    info.dli_fname == NULL ||
	    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD |
		   RTLD_NODELETE) == NULL) {
		e_debug(svinst->event, "sieve_loopguard: cannot stay loaded, "
			"stores are closed after each delivery");
		return;
	}
	sieve_loopguard_plugin_resident = TRUE;
	loopguard_store_keep_idle(TRUE);
}

LOOPGUARD_PLUGIN_LOAD_RESULT
sieve_loopguard_plugin_load(struct sieve_instance *svinst, void **context)
{
	struct sieve_loopguard_plugin_context *pctx;
	const struct sieve_extension *ext_looptest, *ext_ratelimit;

	sieve_loopguard_plugin_stay_loaded(svinst);

	if (loopguard_extension_register(svinst, &looptest_extension,
					 &ext_looptest) < 0 ||
	    loopguard_extension_register(svinst, &ratelimit_extension,
					 &ext_ratelimit) < 0) {
		*context = NULL;
		LOOPGUARD_PLUGIN_LOAD_RETURN(-1);
	}

	pctx = i_new(struct sieve_loopguard_plugin_context, 1);
	pctx->ext_looptest = ext_looptest;
	pctx->ext_ratelimit = ext_ratelimit;

	e_debug(svinst->event, "Sieve loopguard plugin %s loaded",
		LOOPGUARD_VERSION);
	*context = pctx;
	LOOPGUARD_PLUGIN_LOAD_RETURN(0);
}

void sieve_loopguard_plugin_unload(struct sieve_instance *svinst ATTR_UNUSED,
				   void *context)
{
	struct sieve_loopguard_plugin_context *pctx = context;

	if (pctx == NULL)
		return;
	sieve_extension_unregister(pctx->ext_looptest);
	sieve_extension_unregister(pctx->ext_ratelimit);
	i_free(pctx);
}

void sieve_loopguard_plugin_init(void)
{
	/* Nothing: Pigeonhole does not call it. */
}

void sieve_loopguard_plugin_deinit(void)
{
	/* Nothing */
}
