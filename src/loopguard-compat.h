#ifndef LOOPGUARD_COMPAT_H
#define LOOPGUARD_COMPAT_H

/* Everything that differs between Dovecot 2.3 (with Pigeonhole 0.5) and
   Dovecot 2.4 (with Pigeonhole 2.4), in one place. The rest of the code is
   written against 2.4's names; on 2.3 this header maps them.

   Include it after the Dovecot headers a file needs: its Sieve part is
   compiled only where sieve-common.h was included, its doveadm part only
   where doveadm-mail.h was. */

#define LOOPGUARD_DOVECOT_24 DOVECOT_PREREQ(2, 4, 0)

#if LOOPGUARD_DOVECOT_24
#  include "str-parse.h"
#else
#  include "settings-parser.h"
#  define str_begins_with(haystack, needle) \
	str_begins((haystack), (needle))
#  define str_parse_get_interval(str, secs_r, error_r) \
	settings_get_time((str), (secs_r), (error_r))
#  define str_parse_get_size(str, bytes_r, error_r) \
	settings_get_size((str), (bytes_r), (error_r))
#endif

#include "loopguard-settings.h"

/*
 * Sieve plugin
 */

#ifdef SIEVE_COMMON_H

#include "sieve-extensions.h"
#include "sieve-ext-variables.h"

/* What an extension's load callback returns: 2.4 lets it fail. */
#if LOOPGUARD_DOVECOT_24
#  define LOOPGUARD_EXT_LOAD_RESULT int
#  define LOOPGUARD_EXT_LOAD_OK 0
#  define LOOPGUARD_EXT_LOAD_FAILED (-1)
#else
#  define LOOPGUARD_EXT_LOAD_RESULT bool
#  define LOOPGUARD_EXT_LOAD_OK TRUE
#  define LOOPGUARD_EXT_LOAD_FAILED FALSE
#endif

/* What the plugin's load function returns: nothing on 2.3. */
#if LOOPGUARD_DOVECOT_24
#  define LOOPGUARD_PLUGIN_LOAD_RESULT int
#  define LOOPGUARD_PLUGIN_LOAD_RETURN(ret) return (ret)
#else
#  define LOOPGUARD_PLUGIN_LOAD_RESULT void
#  define LOOPGUARD_PLUGIN_LOAD_RETURN(ret) return
#endif

/* Registers an extension the way the administrator enables it: on 2.3
   loading the plugin enables it (sieve_extensions = -NAME disables it), on
   2.4 sieve_extensions { NAME = yes } does, as for Pigeonhole's own
   plugins, since a 2.4 boolean list cannot say "not this one" to an
   extension enabled by default. Returns 0, or -1 on failure. */
static inline int
loopguard_extension_register(struct sieve_instance *svinst,
			     const struct sieve_extension_def *def,
			     const struct sieve_extension **ext_r)
{
#if LOOPGUARD_DOVECOT_24
	return sieve_extension_register(svinst, def, FALSE, ext_r);
#else
	*ext_r = sieve_extension_register(svinst, def, TRUE);
	return *ext_r == NULL ? -1 : 0;
#endif
}

/* The variables extension, or NULL when it cannot be had. */
static inline const struct sieve_extension *
loopguard_variables_extension(struct sieve_instance *svinst)
{
#if LOOPGUARD_DOVECOT_24
	const struct sieve_extension *ext;

	if (sieve_ext_variables_get_extension(svinst, &ext) < 0)
		return NULL;
	return ext;
#else
	return sieve_ext_variables_get_extension(svinst);
#endif
}

#if !LOOPGUARD_DOVECOT_24
#include "sieve-settings.h"

static inline const char *
loopguard_sieve_setting_get(void *context, const char *name)
{
	return sieve_setting_get(context, name);
}
#endif

/* Reads the settings in force for this Sieve instance. */
static inline int
loopguard_sieve_settings_read(struct sieve_instance *svinst, pool_t pool,
			      struct loopguard_settings *set_r,
			      const char **error_r)
{
#if LOOPGUARD_DOVECOT_24
	return loopguard_settings_read(svinst->event, pool, set_r, error_r);
#else
	loopguard_settings_parse(set_r, pool, loopguard_sieve_setting_get,
				 svinst, svinst->event);
	*error_r = NULL;
	return 0;
#endif
}

#endif /* SIEVE_COMMON_H */

/*
 * doveadm plugin
 */

#ifdef DOVEADM_MAIL_H

#include "mail-user.h"

/* A command's init(): 2.3 hands it the positional arguments, which the
   commands read from their named parameters instead, as on 2.4. */
#if LOOPGUARD_DOVECOT_24
#  define DOVEADM_LOOPGUARD_INIT(name) \
	static void name(struct doveadm_mail_cmd_context *_ctx)
#else
#  define DOVEADM_LOOPGUARD_INIT(name) \
	static void name(struct doveadm_mail_cmd_context *_ctx, \
			 const char *const args[] ATTR_UNUSED)
#endif

#if !LOOPGUARD_DOVECOT_24
/* 2.3 refuses an option unless parse_arg() takes it. The value is read
   from the command's parameters in init(), as on 2.4. */
static inline bool
doveadm_loopguard_accept_arg(struct doveadm_mail_cmd_context *ctx ATTR_UNUSED,
			     int c ATTR_UNUSED)
{
	return TRUE;
}

static inline const char *
doveadm_loopguard_setting_get(void *context, const char *name)
{
	return mail_user_plugin_getenv(context, name);
}
#endif

/* Declares a command's options (getopt letters, for 2.3). */
static inline void
doveadm_loopguard_set_options(struct doveadm_mail_cmd_context *ctx,
			      const char *getopt_args ATTR_UNUSED)
{
#if !LOOPGUARD_DOVECOT_24
	ctx->getopt_args = getopt_args;
	ctx->v.parse_arg = doveadm_loopguard_accept_arg;
#else
	(void)ctx;
#endif
}

/* Reads the settings in force for the user. */
static inline int
doveadm_loopguard_settings_read(struct mail_user *user,
				struct loopguard_settings *set_r,
				const char **error_r)
{
#if LOOPGUARD_DOVECOT_24
	return loopguard_settings_read(user->event, user->pool, set_r,
				       error_r);
#else
	/* Invalid values get the same treatment as in the Sieve plugin:
	   a warning and the default. */
	loopguard_settings_parse(set_r, user->pool,
				 doveadm_loopguard_setting_get, user,
				 user->event);
	*error_r = NULL;
	return 0;
#endif
}

#endif /* DOVEADM_MAIL_H */

#endif
