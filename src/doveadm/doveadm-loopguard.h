#ifndef DOVEADM_LOOPGUARD_H
#define DOVEADM_LOOPGUARD_H

/* Shared parts of the doveadm loopguard commands: the user's store and how
   times are printed. */

#include "doveadm-mail.h"
#include "loopguard-compat.h"

struct loopguard_store;

extern struct doveadm_cmd_ver2 doveadm_loopguard_cmd_list;
extern struct doveadm_cmd_ver2 doveadm_loopguard_cmd_unblock;
extern struct doveadm_cmd_ver2 doveadm_loopguard_cmd_log;
extern struct doveadm_cmd_ver2 doveadm_loopguard_cmd_purge;

/* Opens the user's store as configured in plugin { sieve_loopguard_* }.
   A store that does not exist yet is never created: 0 is returned and
   *store_r is NULL. Returns 1 when opened, -1 on error (logged, and the
   command's exit code set). The store logs on the user's event. */
int doveadm_loopguard_open(struct doveadm_mail_cmd_context *ctx,
			   struct mail_user *user,
			   struct loopguard_store **store_r);

/* Logs a store error and fails the command with a temporary error. */
void doveadm_loopguard_failed(struct doveadm_mail_cmd_context *ctx,
			      struct mail_user *user, const char *error);

/* ISO 8601 in local time with the UTC offset, e.g.
   "2024-05-01T13:45:00+02:00"; "-" for 0 (never, not locked). */
const char *doveadm_loopguard_time(time_t t);

/* A stored string as it may be printed by any formatter: control
   characters (newlines and tabs too) replaced, at most
   LOOPGUARD_TEXT_MAX bytes. Stores written before values were sanitized
   on the way in may hold anything. */
const char *doveadm_loopguard_text(const char *str);

/* Registers a column holding a number (JSON prints it unquoted). */
void doveadm_loopguard_header_num(const char *key, const char *title);

#endif
