/* A blocking Redis connection with bounded waits, pipelining and an idle
   cache, for the Redis store. */

#include "lib.h"
#include "array.h"
#include "safe-memset.h"
#include "str-sanitize.h"

#include <unistd.h>
#include <sys/socket.h>

#include "store-redis-conn.h"

/* What a reply the server still owes us belongs to. */
enum redis_owed {
	/* the caller waits for it in _exchange() */
	REDIS_OWED_REQUEST,
	/* sent by _send(): nobody waits, an error is logged */
	REDIS_OWED_WRITE,
	/* connection setup: an error fails the connection */
	REDIS_OWED_AUTH,
	REDIS_OWED_SELECT,
	REDIS_OWED_SCRIPT_LOAD,
};

struct loopguard_redis_conn {
	struct loopguard_redis_conn *next_idle;
	pool_t pool;
	struct loopguard_redis_settings set;
	/* scripts loaded on connecting (NULL-terminated, static) */
	const char *const *scripts;
	struct event *event;

	redisContext *ctx;
	/* the process that connected: a child of fork() never uses it */
	pid_t pid;
	/* one per command queued or sent whose reply is not read yet,
	   oldest first */
	ARRAY(enum redis_owed) owed;
	unsigned int round_trips;
	/* the last attempt to connect, send or read failed */
	bool failed;
};

static struct loopguard_redis_conn *redis_idle_conns = NULL;
static bool redis_keep_idle = FALSE;

static void redis_conn_disconnect(struct loopguard_redis_conn *conn)
{
	conn->failed = TRUE;
	if (conn->ctx != NULL) {
		/* In a child of fork() this only closes the child's copy of
		   the socket: nothing is sent, the parent's use goes on. */
		redisFree(conn->ctx);
		conn->ctx = NULL;
	}
	array_clear(&conn->owed);
}

static void redis_conn_free(struct loopguard_redis_conn **_conn)
{
	struct loopguard_redis_conn *conn = *_conn;

	*_conn = NULL;
	redis_conn_disconnect(conn);
	if (conn->set.password != NULL) {
		safe_memset((void *)conn->set.password, 0,
			    strlen(conn->set.password));
	}
	pool_unref(&conn->pool);
}

static bool
redis_settings_equal(const struct loopguard_redis_settings *a,
		     const struct loopguard_redis_settings *b)
{
	return null_strcmp(a->host, b->host) == 0 && a->port == b->port &&
		null_strcmp(a->path, b->path) == 0 && a->db == b->db &&
		a->timeout_msecs == b->timeout_msecs &&
		null_strcmp(a->password, b->password) == 0;
}

static void
redis_conn_append_setup(struct loopguard_redis_conn *conn,
			enum redis_owed owed, const char *arg0,
			const char *arg1, const char *arg2)
{
	const char *argv[3] = { arg0, arg1, arg2 };

	(void)redisAppendCommandArgv(conn->ctx, arg2 == NULL ? 2 : 3, argv,
				     NULL);
	array_push_back(&conn->owed, &owed);
}

static void redis_conn_drain(struct loopguard_redis_conn *conn);

/* Whether the server is still at the other end of an idle connection: a
   restarted Redis left it closed, and finding that out by a failed
   request would cost a delivery. */
static bool redis_conn_alive(struct loopguard_redis_conn *conn)
{
	char c;
	ssize_t ret;

	ret = recv(conn->ctx->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	/* nothing is owed: data now would be out of step too */
	return ret < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void redis_conn_reuse(struct loopguard_redis_conn *conn)
{
	if (conn->ctx == NULL)
		return;
	/* the last commit's replies, long since arrived */
	if (array_count(&conn->owed) > 0)
		redis_conn_drain(conn);
	if (conn->ctx != NULL && !redis_conn_alive(conn))
		redis_conn_disconnect(conn);
	/* not a failure of this use: it connects again */
	conn->failed = FALSE;
}

struct loopguard_redis_conn *
loopguard_redis_conn_get(const struct loopguard_redis_settings *set,
			 const char *const *scripts, struct event *event)
{
	struct loopguard_redis_conn *conn, **connp;
	pool_t pool;

	for (connp = &redis_idle_conns; *connp != NULL; ) {
		conn = *connp;
		if (conn->pid != getpid()) {
			/* inherited over fork(): never ours to use */
			*connp = conn->next_idle;
			redis_conn_free(&conn);
		} else if (redis_settings_equal(&conn->set, set)) {
			*connp = conn->next_idle;
			conn->next_idle = NULL;
			conn->event = event;
			redis_conn_reuse(conn);
			return conn;
		} else {
			connp = &conn->next_idle;
		}
	}

	pool = pool_alloconly_create("loopguard redis connection", 512);
	conn = p_new(pool, struct loopguard_redis_conn, 1);
	conn->pool = pool;
	conn->set = *set;
	conn->set.host = p_strdup(pool, set->host);
	conn->set.path = p_strdup(pool, set->path);
	conn->set.prefix = p_strdup(pool, set->prefix);
	conn->set.password = p_strdup(pool, set->password);
	conn->pid = getpid();
	conn->scripts = scripts;
	conn->event = event;
	p_array_init(&conn->owed, pool, 8);
	return conn;
}

static const char *
redis_conn_io_error(struct loopguard_redis_conn *conn, int saved_errno)
{
	const char *address = loopguard_redis_settings_address(&conn->set);
	bool timeout = FALSE;

#if HIREDIS_MAJOR >= 1
	timeout = conn->ctx->err == REDIS_ERR_TIMEOUT;
#endif
	/* a socket timeout (SO_RCVTIMEO/SO_SNDTIMEO) shows as EAGAIN */
	if (conn->ctx->err == REDIS_ERR_IO &&
	    (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK))
		timeout = TRUE;
	if (timeout) {
		return t_strdup_printf("Redis %s: no reply within "
				       "timeout_msecs=%u", address,
				       conn->set.timeout_msecs);
	}
	return t_strdup_printf("Redis %s: %s", address,
			       str_sanitize(conn->ctx->errstr, 256));
}

static int
redis_conn_connect(struct loopguard_redis_conn *conn, const char **error_r)
{
	struct timeval tv;
	const char *const *script;
	redisContext *ctx;

	tv.tv_sec = conn->set.timeout_msecs / 1000;
	tv.tv_usec = (conn->set.timeout_msecs % 1000) * 1000;
	if (conn->set.path != NULL)
		ctx = redisConnectUnixWithTimeout(conn->set.path, tv);
	else
		ctx = redisConnectWithTimeout(conn->set.host, conn->set.port,
					      tv);
	if (ctx == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "redisConnect: out of memory");
	if (ctx->err != 0) {
		*error_r = t_strdup_printf(
			"Redis %s: connect failed: %s",
			loopguard_redis_settings_address(&conn->set),
			str_sanitize(ctx->errstr, 256));
		redisFree(ctx);
		return -1;
	}
	/* bounds every later read and write, not only the connect */
	if (redisSetTimeout(ctx, tv) != REDIS_OK) {
		*error_r = t_strdup_printf(
			"Redis %s: setting the timeout failed: %s",
			loopguard_redis_settings_address(&conn->set),
			str_sanitize(ctx->errstr, 256));
		redisFree(ctx);
		return -1;
	}
	conn->ctx = ctx;
	conn->pid = getpid();
	conn->failed = FALSE;
	array_clear(&conn->owed);

	/* Sent with the first request: no round trip of their own. Loading
	   the scripts now spares the first EVALSHA its NOSCRIPT. */
	if (conn->set.password != NULL) {
		redis_conn_append_setup(conn, REDIS_OWED_AUTH, "AUTH",
					conn->set.password, NULL);
	}
	if (conn->set.db != 0) {
		redis_conn_append_setup(conn, REDIS_OWED_SELECT, "SELECT",
					dec2str(conn->set.db), NULL);
	}
	for (script = conn->scripts; script != NULL && *script != NULL;
	     script++) {
		redis_conn_append_setup(conn, REDIS_OWED_SCRIPT_LOAD, "SCRIPT",
					"LOAD", *script);
	}
	return 0;
}

int loopguard_redis_conn_append(struct loopguard_redis_conn *conn,
				unsigned int argc, const char *const *argv,
				const size_t *argvlen, const char **error_r)
{
	if (conn->ctx != NULL && conn->pid != getpid())
		redis_conn_disconnect(conn);
	if (conn->ctx == NULL && redis_conn_connect(conn, error_r) < 0) {
		conn->failed = TRUE;
		return -1;
	}
	if (redisAppendCommandArgv(conn->ctx, (int)argc, (const char **)argv,
				   argvlen) != REDIS_OK)
		i_fatal_status(FATAL_OUTOFMEM, "redisAppendCommandArgv: "
			       "out of memory");
	array_push_back(&conn->owed, &(enum redis_owed){ REDIS_OWED_REQUEST });
	return 0;
}

static int
redis_conn_read(struct loopguard_redis_conn *conn, redisReply **reply_r,
		const char **error_r)
{
	void *reply;

	if (redisGetReply(conn->ctx, &reply) != REDIS_OK || reply == NULL) {
		*error_r = redis_conn_io_error(conn, errno);
		redis_conn_disconnect(conn);
		return -1;
	}
	*reply_r = reply;
	return 0;
}

/* Reads the reply owed for a command nobody waits for. */
static int
redis_conn_read_owed(struct loopguard_redis_conn *conn, enum redis_owed owed,
		     const char **error_r)
{
	const char *address = loopguard_redis_settings_address(&conn->set);
	redisReply *reply;
	int ret = 0;

	if (redis_conn_read(conn, &reply, error_r) < 0)
		return -1;
	if (reply->type == REDIS_REPLY_ERROR) {
		switch (owed) {
		case REDIS_OWED_AUTH:
		case REDIS_OWED_SELECT:
		case REDIS_OWED_SCRIPT_LOAD:
			*error_r = t_strdup_printf(
				"Redis %s: %s failed: %s", address,
				owed == REDIS_OWED_AUTH ? "AUTH" :
				owed == REDIS_OWED_SELECT ? "SELECT" :
				"SCRIPT LOAD",
				loopguard_redis_reply_text(reply));
			ret = -1;
			break;
		case REDIS_OWED_WRITE:
			if (conn->event != NULL) {
				e_error(conn->event, "Redis %s: an update "
					"failed: %s", address,
					loopguard_redis_reply_text(reply));
			}
			break;
		case REDIS_OWED_REQUEST:
			i_unreached();
		}
	}
	freeReplyObject(reply);
	if (ret < 0)
		redis_conn_disconnect(conn);
	return ret;
}

int loopguard_redis_conn_exchange(struct loopguard_redis_conn *conn,
				  unsigned int count, redisReply **replies_r,
				  const char **error_r)
{
	const enum redis_owed *owed;
	unsigned int i, n, earlier;

	i_assert(conn->ctx != NULL);
	owed = array_get(&conn->owed, &n);
	i_assert(count <= n);
	earlier = n - count;
	for (i = earlier; i < n; i++)
		i_assert(owed[i] == REDIS_OWED_REQUEST);

	/* redisGetReply() sends what is queued before it reads */
	conn->round_trips++;
	for (i = 0; i < earlier; i++) {
		if (redis_conn_read_owed(conn, owed[i], error_r) < 0)
			return -1;
	}
	for (i = 0; i < count; i++) {
		if (redis_conn_read(conn, &replies_r[i], error_r) < 0) {
			loopguard_redis_replies_free(replies_r, i);
			return -1;
		}
	}
	array_clear(&conn->owed);
	return 0;
}

void loopguard_redis_replies_free(redisReply **replies, unsigned int count)
{
	unsigned int i;

	for (i = 0; i < count; i++) {
		if (replies[i] != NULL)
			freeReplyObject(replies[i]);
		replies[i] = NULL;
	}
}

int loopguard_redis_conn_send(struct loopguard_redis_conn *conn,
			      const char **error_r)
{
	enum redis_owed *owed;
	int done = 0;

	i_assert(conn->ctx != NULL);
	do {
		if (redisBufferWrite(conn->ctx, &done) != REDIS_OK) {
			*error_r = redis_conn_io_error(conn, errno);
			redis_conn_disconnect(conn);
			return -1;
		}
	} while (done == 0);
	array_foreach_modifiable(&conn->owed, owed) {
		if (*owed == REDIS_OWED_REQUEST)
			*owed = REDIS_OWED_WRITE;
	}
	return 0;
}

/* Reads the replies of what was sent without waiting, so that an error
   among them is logged. */
static void redis_conn_drain(struct loopguard_redis_conn *conn)
{
	const enum redis_owed *owed;
	const char *error;
	unsigned int i, n;

	owed = array_get(&conn->owed, &n);
	for (i = 0; i < n; i++) {
		if (owed[i] == REDIS_OWED_REQUEST ||
		    redis_conn_read_owed(conn, owed[i], &error) < 0) {
			/* unsent requests or a broken connection: drop it */
			redis_conn_disconnect(conn);
			return;
		}
	}
	array_clear(&conn->owed);
}

void loopguard_redis_conn_release(struct loopguard_redis_conn **_conn)
{
	struct loopguard_redis_conn *conn = *_conn;
	const enum redis_owed *owed;
	unsigned int i, n;
	bool sound = TRUE;

	if (conn == NULL)
		return;
	*_conn = NULL;

	if (conn->ctx != NULL && conn->pid != getpid())
		redis_conn_disconnect(conn);
	owed = array_get(&conn->owed, &n);
	for (i = 0; i < n; i++) {
		if (owed[i] == REDIS_OWED_REQUEST)
			sound = FALSE;
	}
	if (redis_keep_idle && conn->ctx != NULL && sound) {
		/* replies of the last commit are read with the next request:
		   nobody waits for them now */
		conn->event = NULL;
		conn->next_idle = redis_idle_conns;
		redis_idle_conns = conn;
		return;
	}
	if (conn->ctx != NULL)
		redis_conn_drain(conn);
	conn->event = NULL;
	redis_conn_free(&conn);
}

void loopguard_redis_conn_keep_idle(bool keep)
{
	struct loopguard_redis_conn *conn;

	redis_keep_idle = keep;
	if (keep)
		return;
	while (redis_idle_conns != NULL) {
		conn = redis_idle_conns;
		redis_idle_conns = conn->next_idle;
		redis_conn_free(&conn);
	}
}

int loopguard_redis_conn_command(struct loopguard_redis_conn *conn,
				 unsigned int argc, const char *const *argv,
				 const size_t *argvlen, redisReply **reply_r,
				 const char **error_r)
{
	*reply_r = NULL;
	if (loopguard_redis_conn_append(conn, argc, argv, argvlen,
					error_r) < 0 ||
	    loopguard_redis_conn_exchange(conn, 1, reply_r, error_r) < 0)
		return -1;
	if ((*reply_r)->type == REDIS_REPLY_ERROR) {
		*error_r = t_strdup_printf("Redis %s: %s failed: %s",
			loopguard_redis_settings_address(&conn->set), argv[0],
			loopguard_redis_reply_text(*reply_r));
		freeReplyObject(*reply_r);
		*reply_r = NULL;
		return -1;
	}
	return 0;
}

bool loopguard_redis_conn_failed(const struct loopguard_redis_conn *conn)
{
	return conn->failed;
}

unsigned int
loopguard_redis_conn_round_trips(const struct loopguard_redis_conn *conn)
{
	return conn->round_trips;
}

const char *loopguard_redis_reply_text(const redisReply *reply)
{
	switch (reply->type) {
	case REDIS_REPLY_ERROR:
	case REDIS_REPLY_STATUS:
	case REDIS_REPLY_STRING:
		return str_sanitize(t_strndup(reply->str, reply->len), 256);
	case REDIS_REPLY_INTEGER:
		return dec2str(reply->integer);
	case REDIS_REPLY_NIL:
		return "(nil)";
	case REDIS_REPLY_ARRAY:
		return t_strdup_printf("(array of %zu)", reply->elements);
	}
	return t_strdup_printf("(reply type %d)", reply->type);
}
