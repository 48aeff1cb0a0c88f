/* Dovecot 2.4: the settings module that the config process loads from
   $moduledir/settings, so that it knows the sieve_loopguard_* settings. */

#include "lib.h"
#include "settings-parser.h"

#include "loopguard-settings.h"

extern const char *sieve_loopguard_settings_version;
extern const struct setting_parser_info *sieve_loopguard_settings_set_infos[];

const char *sieve_loopguard_settings_version = DOVECOT_ABI_VERSION;

const struct setting_parser_info *sieve_loopguard_settings_set_infos[] = {
	&loopguard_setting_parser_info,
	NULL
};
