#ifndef SIEVE_LOOPGUARD_PLUGIN_H
#define SIEVE_LOOPGUARD_PLUGIN_H

/* Entry points Pigeonhole's plugin loader looks up by name. Include it
   after loopguard-compat.h. */

extern const char *sieve_loopguard_plugin_version;

/* Returns 0 or -1 on Dovecot 2.4, nothing on 2.3. */
LOOPGUARD_PLUGIN_LOAD_RESULT
sieve_loopguard_plugin_load(struct sieve_instance *svinst, void **context);
void sieve_loopguard_plugin_unload(struct sieve_instance *svinst,
				   void *context);

void sieve_loopguard_plugin_init(void);
void sieve_loopguard_plugin_deinit(void);

#endif
