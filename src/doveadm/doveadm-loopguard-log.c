/* doveadm loopguard log: a user's capped log of fired tests. */

#include "lib.h"
#include "array.h"
#include "strnum.h"
#include "mail-user.h"
#include "doveadm-print.h"

#include "loopguard-store.h"
#include "doveadm-loopguard.h"

#include <time.h>

struct loopguard_log_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	/* as given, parsed once in init so that every user of -A gets the
	   same cut-off */
	const char *since_arg;
	time_t since;

	/* per user */
	pool_t events_pool;
	ARRAY(struct loopguard_store_event) events;
};

/* --since: digits are a UNIX timestamp, anything else a Dovecot interval
   ("30m", "2d", "1 weeks") counted back from now. */
static int
cmd_loopguard_log_parse_since(const char *str, time_t now, time_t *since_r,
			      const char **error_r)
{
	uintmax_t stamp;
	unsigned int secs;

	if (str_to_uintmax(str, &stamp) == 0) {
		if (stamp > (uintmax_t)INT64_MAX || (time_t)stamp < 0) {
			*error_r = "timestamp out of range";
			return -1;
		}
		*since_r = (time_t)stamp;
		return 0;
	}
	if (str_parse_get_interval(str, &secs, error_r) < 0)
		return -1;
	*since_r = now > (time_t)secs ? now - (time_t)secs : 0;
	return 0;
}

static const char *cmd_loopguard_log_strdup(pool_t pool, const char *str)
{
	return p_strdup(pool, str == NULL ? "" : str);
}

static int
cmd_loopguard_log_event(const struct loopguard_store_event *event,
			void *context)
{
	struct loopguard_log_cmd_context *ctx = context;
	struct loopguard_store_event *copy;

	/* Copied out of the read transaction; see list. */
	copy = array_append_space(&ctx->events);
	*copy = *event;
	copy->test = cmd_loopguard_log_strdup(ctx->events_pool, event->test);
	copy->handle = cmd_loopguard_log_strdup(ctx->events_pool,
						event->handle);
	copy->key = cmd_loopguard_log_strdup(ctx->events_pool, event->key);
	copy->reasons = cmd_loopguard_log_strdup(ctx->events_pool,
						 event->reasons);
	copy->message_id = cmd_loopguard_log_strdup(ctx->events_pool,
						    event->message_id);
	return 0;
}

static void cmd_loopguard_log_print(const struct loopguard_store_event *event)
{
	doveadm_print(doveadm_loopguard_time(event->time));
	doveadm_print(doveadm_loopguard_text(event->test));
	doveadm_print(doveadm_loopguard_text(event->handle));
	doveadm_print(doveadm_loopguard_text(event->key));
	doveadm_print(doveadm_loopguard_text(event->reasons));
	doveadm_print(doveadm_loopguard_text(event->message_id));
	doveadm_print_num(event->count);
	doveadm_print_num(event->window);
	doveadm_print(doveadm_loopguard_time(event->locked_until));
}

static int
cmd_loopguard_log_run(struct doveadm_mail_cmd_context *_ctx,
		      struct mail_user *user)
{
	struct loopguard_log_cmd_context *ctx =
		container_of(_ctx, struct loopguard_log_cmd_context, ctx);
	const struct loopguard_store_event *event;
	struct loopguard_store *store;
	const char *error;
	int ret;

	ret = doveadm_loopguard_open(_ctx, user, &store);
	if (ret <= 0)
		return ret;

	ctx->events_pool = pool_alloconly_create("loopguard log events",
						 1024);
	p_array_init(&ctx->events, ctx->events_pool, 32);

	ret = loopguard_store_log_iterate(store, ctx->since,
					  cmd_loopguard_log_event, ctx,
					  &error);
	loopguard_store_close(&store);
	if (ret < 0)
		doveadm_loopguard_failed(_ctx, user, error);
	else {
		array_foreach(&ctx->events, event)
			cmd_loopguard_log_print(event);
	}
	pool_unref(&ctx->events_pool);
	return ret;
}

DOVEADM_LOOPGUARD_INIT(cmd_loopguard_log_init)
{
	struct loopguard_log_cmd_context *ctx =
		container_of(_ctx, struct loopguard_log_cmd_context, ctx);
	const char *error;

	if (!doveadm_cmd_param_str(_ctx->cctx, "since", &ctx->since_arg))
		ctx->since_arg = NULL;
	if (ctx->since_arg != NULL &&
	    cmd_loopguard_log_parse_since(ctx->since_arg, time(NULL),
					  &ctx->since, &error) < 0) {
		i_fatal_status(EX_USAGE, "Invalid --since '%s': %s",
			       ctx->since_arg, error);
	}

	doveadm_print_header_simple("time");
	doveadm_print_header_simple("test");
	doveadm_print_header_simple("handle");
	doveadm_print_header_simple("key");
	doveadm_print_header_simple("reasons");
	doveadm_print_header_simple("message-id");
	doveadm_loopguard_header_num("count", "count");
	doveadm_loopguard_header_num("window", "window");
	doveadm_print_header_simple("locked-until");
}

static struct doveadm_mail_cmd_context *cmd_loopguard_log_alloc(void)
{
	struct loopguard_log_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct loopguard_log_cmd_context);
	doveadm_loopguard_set_options(&ctx->ctx, "s:");
	ctx->ctx.v.init = cmd_loopguard_log_init;
	ctx->ctx.v.run = cmd_loopguard_log_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 doveadm_loopguard_cmd_log = {
	.name = "loopguard log",
	.mail_cmd = cmd_loopguard_log_alloc,
	.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX"[--since <time>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('s', "since", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
};
