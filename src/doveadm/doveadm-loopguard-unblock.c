/* doveadm loopguard unblock: forgets a ratelimit key's lock and history. */

#include "lib.h"
#include "array.h"
#include "str-sanitize.h"
#include "mail-user.h"

#include "loopguard-store.h"
#include "loopguard-text.h"
#include "doveadm-loopguard.h"

#include <time.h>

struct loopguard_unblock_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	/* NULL unblocks the key under every handle */
	const char *handle;
	const char *key;
	/* the name key is stored under (see loopguard_text_stored_name()):
	   the key as list shows it, or as the message had it, both work */
	const char *stored_key;

	/* per user: the handles the key is stored under */
	pool_t handles_pool;
	ARRAY_TYPE(const_string) handles;
};

static int
cmd_loopguard_unblock_window(const struct loopguard_store_window *window,
			     void *context)
{
	struct loopguard_unblock_cmd_context *ctx = context;
	const char *handle;

	if (strcmp(window->key, ctx->stored_key) == 0) {
		handle = p_strdup(ctx->handles_pool, window->handle);
		array_push_back(&ctx->handles, &handle);
	}
	return 0;
}

/* The handles are collected first and deleted once the iteration's read
   transaction has ended: no write may happen inside a store callback. */
static int
cmd_loopguard_unblock_delete(struct loopguard_unblock_cmd_context *ctx,
			     struct loopguard_store *store,
			     unsigned int *deleted_r, const char **error_r)
{
	const char *handle;
	int ret;

	*deleted_r = 0;
	if (ctx->handle != NULL)
		array_push_back(&ctx->handles, &ctx->handle);
	else if (loopguard_store_window_iterate(store, NULL, time(NULL),
						cmd_loopguard_unblock_window,
						ctx, error_r) < 0)
		return -1;

	array_foreach_elem(&ctx->handles, handle) {
		ret = loopguard_store_window_delete(store, handle,
						    ctx->stored_key, error_r);
		if (ret < 0)
			return -1;
		if (ret > 0)
			(*deleted_r)++;
	}
	return 0;
}

static int
cmd_loopguard_unblock_run(struct doveadm_mail_cmd_context *_ctx,
			  struct mail_user *user)
{
	struct loopguard_unblock_cmd_context *ctx =
		container_of(_ctx, struct loopguard_unblock_cmd_context, ctx);
	struct loopguard_store *store;
	const char *error;
	unsigned int deleted = 0;
	int ret;

	ret = doveadm_loopguard_open(_ctx, user, &store);
	if (ret < 0)
		return -1;
	if (ret > 0) {
		ctx->handles_pool = pool_alloconly_create(
			"loopguard unblock handles", 256);
		p_array_init(&ctx->handles, ctx->handles_pool, 4);
		ret = cmd_loopguard_unblock_delete(ctx, store, &deleted,
						   &error);
		loopguard_store_close(&store);
		pool_unref(&ctx->handles_pool);
		if (ret < 0) {
			doveadm_loopguard_failed(_ctx, user, error);
			return -1;
		}
	}

	if (deleted == 0) {
		if (ctx->handle == NULL) {
			e_error(user->event, "loopguard: key '%s' not found",
				str_sanitize(ctx->key, 256));
		} else {
			e_error(user->event, "loopguard: key '%s' not found "
				"under handle '%s'",
				str_sanitize(ctx->key, 256),
				str_sanitize(ctx->handle, 64));
		}
		doveadm_mail_failed_error(_ctx, MAIL_ERROR_NOTFOUND);
		return -1;
	}
	return 0;
}

DOVEADM_LOOPGUARD_INIT(cmd_loopguard_unblock_init)
{
	struct loopguard_unblock_cmd_context *ctx =
		container_of(_ctx, struct loopguard_unblock_cmd_context, ctx);
	const char *handle, *key;

	if (!doveadm_cmd_param_str(_ctx->cctx, "key", &key))
		doveadm_mail_help_name("loopguard unblock");
	if (doveadm_cmd_param_str(_ctx->cctx, "handle", &handle))
		ctx->handle = p_strdup(_ctx->pool, handle);
	/* A key is one user's: over many users "not found" would be the
	   normal answer and could not be told from a typo. */
	if (!_ctx->iterate_single_user) {
		i_error("loopguard unblock takes one user (-u user), "
			"not -A, -F or a wildcard");
		doveadm_mail_help_name("loopguard unblock");
	}
	ctx->key = p_strdup(_ctx->pool, key);
	ctx->stored_key = p_strdup(_ctx->pool,
				   loopguard_text_stored_name(ctx->key));
	if (ctx->handle != NULL) {
		ctx->handle = p_strdup(_ctx->pool,
			loopguard_text_stored_name(ctx->handle));
	}
}

static struct doveadm_mail_cmd_context *cmd_loopguard_unblock_alloc(void)
{
	struct loopguard_unblock_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct loopguard_unblock_cmd_context);
	doveadm_loopguard_set_options(&ctx->ctx, "H:");
	ctx->ctx.v.init = cmd_loopguard_unblock_init;
	ctx->ctx.v.run = cmd_loopguard_unblock_run;
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 doveadm_loopguard_cmd_unblock = {
	.name = "loopguard unblock",
	.mail_cmd = cmd_loopguard_unblock_alloc,
	.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX"[--handle <handle>] <key>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('H', "handle", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "key", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
