#ifndef SIEVE_LOOPGUARD_PLUGIN_H
#define SIEVE_LOOPGUARD_PLUGIN_H

/* Entry points Pigeonhole's plugin loader looks up by name. */

struct sieve_instance;

extern const char *sieve_loopguard_plugin_version;

void sieve_loopguard_plugin_load(struct sieve_instance *svinst,
				 void **context);
void sieve_loopguard_plugin_unload(struct sieve_instance *svinst,
				   void *context);

void sieve_loopguard_plugin_init(void);
void sieve_loopguard_plugin_deinit(void);

#endif
