/* The doveadm plugin: registers the doveadm loopguard commands. */

#include "lib.h"
#include "module-dir.h"

#include "doveadm-loopguard.h"

const char *doveadm_loopguard_plugin_version = DOVECOT_ABI_VERSION;

void doveadm_loopguard_plugin_init(struct module *module);
void doveadm_loopguard_plugin_deinit(void);

void doveadm_loopguard_plugin_init(struct module *module ATTR_UNUSED)
{
	doveadm_cmd_register_ver2(&doveadm_loopguard_cmd_list);
	doveadm_cmd_register_ver2(&doveadm_loopguard_cmd_unblock);
	doveadm_cmd_register_ver2(&doveadm_loopguard_cmd_log);
	doveadm_cmd_register_ver2(&doveadm_loopguard_cmd_purge);
}

void doveadm_loopguard_plugin_deinit(void)
{
}
