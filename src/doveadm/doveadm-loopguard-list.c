/* doveadm loopguard list: a user's ratelimit keys and their state. */

#include "lib.h"
#include "array.h"
#include "mail-user.h"
#include "doveadm-print.h"

#include "loopguard-store.h"
#include "loopguard-text.h"
#include "doveadm-loopguard.h"

#include <time.h>

struct loopguard_list_row {
	const char *handle;
	const char *key;
	struct loopguard_window_state state;
};

struct loopguard_list_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	/* NULL lists every handle */
	const char *handle;

	/* per user */
	time_t now;
	pool_t rows_pool;
	ARRAY(struct loopguard_list_row) rows;
};

/* looptest's duplicate fingerprints are hashes of messages: nothing an
   administrator can read or act on, so only the windows of ratelimit keys
   are listed. purge still covers both. */
static int
cmd_loopguard_list_window(const struct loopguard_store_window *window,
			  void *context)
{
	struct loopguard_list_cmd_context *ctx = context;
	struct loopguard_list_row *row;

	/* The window's strings are valid only during the call (LMDB: inside
	   the read transaction); printing may block on a slow reader of
	   stdout, so the rows are copied and printed afterwards. */
	row = array_append_space(&ctx->rows);
	row->handle = p_strdup(ctx->rows_pool, window->handle);
	row->key = p_strdup(ctx->rows_pool, window->key);
	row->state = window->state;
	return 0;
}

static void cmd_loopguard_list_print(const struct loopguard_list_row *row)
{
	doveadm_print(doveadm_loopguard_text(row->handle));
	doveadm_print(doveadm_loopguard_text(row->key));
	doveadm_print_num(row->state.count_in_window);
	doveadm_print_num(row->state.count);
	doveadm_print_num(row->state.period);
	doveadm_print_num(row->state.lock);
	doveadm_print(doveadm_loopguard_time(row->state.locked_until));
	doveadm_print(doveadm_loopguard_time(row->state.last_seen));
}

static int
cmd_loopguard_list_run(struct doveadm_mail_cmd_context *_ctx,
		       struct mail_user *user)
{
	struct loopguard_list_cmd_context *ctx =
		container_of(_ctx, struct loopguard_list_cmd_context, ctx);
	const struct loopguard_list_row *row;
	struct loopguard_store *store;
	const char *error;
	int ret;

	ret = doveadm_loopguard_open(_ctx, user, &store);
	if (ret <= 0)
		return ret;

	ctx->now = time(NULL);
	ctx->rows_pool = pool_alloconly_create("loopguard list rows", 1024);
	p_array_init(&ctx->rows, ctx->rows_pool, 32);

	ret = loopguard_store_window_iterate(store, ctx->handle, ctx->now,
					     cmd_loopguard_list_window, ctx,
					     &error);
	loopguard_store_close(&store);
	if (ret < 0)
		doveadm_loopguard_failed(_ctx, user, error);
	else {
		array_foreach(&ctx->rows, row)
			cmd_loopguard_list_print(row);
	}
	pool_unref(&ctx->rows_pool);
	return ret;
}

DOVEADM_LOOPGUARD_INIT(cmd_loopguard_list_init)
{
	struct loopguard_list_cmd_context *ctx =
		container_of(_ctx, struct loopguard_list_cmd_context, ctx);
	const char *handle;

	if (doveadm_cmd_param_str(_ctx->cctx, "handle", &handle)) {
		/* as stored (loopguard_text_stored_name()) */
		ctx->handle = p_strdup(_ctx->pool,
				       loopguard_text_stored_name(handle));
	}

	doveadm_print_header_simple("handle");
	doveadm_print_header_simple("key");
	doveadm_loopguard_header_num("count", "count");
	doveadm_loopguard_header_num("limit", "limit");
	doveadm_loopguard_header_num("window", "window");
	doveadm_loopguard_header_num("lock", "lock");
	doveadm_print_header_simple("locked-until");
	doveadm_print_header_simple("last-seen");
}

static struct doveadm_mail_cmd_context *cmd_loopguard_list_alloc(void)
{
	struct loopguard_list_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct loopguard_list_cmd_context);
	doveadm_loopguard_set_options(&ctx->ctx, "H:");
	ctx->ctx.v.init = cmd_loopguard_list_init;
	ctx->ctx.v.run = cmd_loopguard_list_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 doveadm_loopguard_cmd_list = {
	.name = "loopguard list",
	.mail_cmd = cmd_loopguard_list_alloc,
	.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX"[--handle <handle>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('H', "handle", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
};
