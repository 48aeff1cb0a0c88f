/* doveadm loopguard purge: drops expired records, or with --all everything. */

#include "lib.h"
#include "mail-user.h"
#include "doveadm-print.h"

#include "loopguard-store.h"
#include "doveadm-loopguard.h"

#include <time.h>

struct loopguard_purge_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	bool all;
};

static int
cmd_loopguard_purge_run(struct doveadm_mail_cmd_context *_ctx,
			struct mail_user *user)
{
	struct loopguard_purge_cmd_context *ctx =
		container_of(_ctx, struct loopguard_purge_cmd_context, ctx);
	struct loopguard_store *store;
	unsigned int purged = 0;
	const char *error;
	int ret;

	ret = doveadm_loopguard_open(_ctx, user, &store);
	if (ret < 0)
		return -1;
	if (ret > 0) {
		ret = loopguard_store_purge(store, time(NULL), ctx->all,
					    &purged, &error);
		loopguard_store_close(&store);
		if (ret < 0) {
			doveadm_loopguard_failed(_ctx, user, error);
			return -1;
		}
	}
	/* A user without a store still gets a line, so -A shows everyone. */
	doveadm_print_num(purged);
	return 0;
}

DOVEADM_LOOPGUARD_INIT(cmd_loopguard_purge_init)
{
	struct loopguard_purge_cmd_context *ctx =
		container_of(_ctx, struct loopguard_purge_cmd_context, ctx);
	bool all;

	ctx->all = doveadm_cmd_param_bool(_ctx->cctx, "all", &all) && all;
	doveadm_loopguard_header_num("purged", "purged");
}

static struct doveadm_mail_cmd_context *cmd_loopguard_purge_alloc(void)
{
	struct loopguard_purge_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct loopguard_purge_cmd_context);
	doveadm_loopguard_set_options(&ctx->ctx, "a");
	ctx->ctx.v.init = cmd_loopguard_purge_init;
	ctx->ctx.v.run = cmd_loopguard_purge_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_FLOW);
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 doveadm_loopguard_cmd_purge = {
	.name = "loopguard purge",
	.mail_cmd = cmd_loopguard_purge_alloc,
	.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX"[--all]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('a', "all", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAMS_END
};
