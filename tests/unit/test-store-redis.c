/* Unit tests of the Redis store driver, against redis-servers of their
   own on 127.0.0.1 (never a system service). */

#include "lib.h"

#include <stdio.h>

#ifndef HAVE_HIREDIS

int main(void)
{
	printf("skipped: built without Redis support\n");
	return 77;
}

#else

#include "array.h"
#include "buffer.h"
#include "str.h"
#include "time-util.h"
#include "unlink-directory.h"
#include "test-common.h"

#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <signal.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <hiredis/hiredis.h>

#include "loopguard-compat.h"
#include "loopguard-store-private.h"
#include "store-redis.h"
#include "store-redis-conn.h"
#include "store-redis-keys.h"
#include "store-redis-settings.h"
#include "loopguard-window.h"

#define TEST_PREFIX "lgtest"
#define TEST_PASSWORD "s3cret-Pw"
/* generous for a loaded machine, far below "hangs" */
#define TEST_TIMEOUT_BOUND_MSECS 1500

struct test_redis {
	pid_t pid;
	in_port_t port;
	char *dir;
	char *socket_path;
	const char *password;
};

static const char *test_dir;
static const char *redis_server_path;
static struct event *test_event;
static struct test_redis test_server;
static redisContext *admin;
static unsigned int test_seed;
static time_t test_now;

/*
 * Our own redis-server
 */

/* Debian's redis-tools has the server binary as redis-check-rdb, which
   runs as a server when called by the name redis-server; the package
   named redis-server adds only that name and a system service. */
static const char *test_redis_find_server(void)
{
	static const char *const names[] = {
		"redis-server", "redis-check-rdb"
	};
	const char *path = getenv("LOOPGUARD_REDIS_SERVER");
	const char *const *dirs;
	unsigned int i;

	if (path != NULL)
		return path;
	dirs = t_strsplit(getenv("PATH") != NULL ? getenv("PATH") :
			  "/usr/bin:/bin", ":");
	for (i = 0; i < N_ELEMENTS(names); i++) {
		for (const char *const *dir = dirs; *dir != NULL; dir++) {
			path = t_strconcat(*dir, "/", names[i], NULL);
			if (access(path, X_OK) == 0)
				return i_strdup(path);
		}
	}
	return NULL;
}

static in_port_t test_free_port(void)
{
	union {
		struct sockaddr sa;
		struct sockaddr_in sin;
	} addr;
	socklen_t len = sizeof(addr.sin);
	int fd;

	/* bound and closed: free now, and Redis binds with SO_REUSEADDR */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		i_fatal("socket() failed: %m");
	i_zero(&addr);
	addr.sin.sin_family = AF_INET;
	addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, &addr.sa, sizeof(addr.sin)) < 0 ||
	    getsockname(fd, &addr.sa, &len) < 0)
		i_fatal("bind() failed: %m");
	i_close_fd(&fd);
	return ntohs(addr.sin.sin_port);
}

static redisContext *test_redis_connect(const struct test_redis *server)
{
	struct timeval tv = { 1, 0 };
	redisContext *ctx;
	redisReply *reply;

	ctx = redisConnectWithTimeout("127.0.0.1", server->port, tv);
	if (ctx == NULL || ctx->err != 0) {
		if (ctx != NULL)
			redisFree(ctx);
		return NULL;
	}
	(void)redisSetTimeout(ctx, tv);
	if (server->password != NULL) {
		reply = redisCommand(ctx, "AUTH %s", server->password);
		if (reply != NULL)
			freeReplyObject(reply);
	}
	reply = redisCommand(ctx, "PING");
	if (reply == NULL || reply->type != REDIS_REPLY_STATUS) {
		if (reply != NULL)
			freeReplyObject(reply);
		redisFree(ctx);
		return NULL;
	}
	freeReplyObject(reply);
	return ctx;
}

static void test_redis_exec(const struct test_redis *server)
{
	ARRAY_TYPE(const_string) args;
	const char *arg;
	int fd;

	t_array_init(&args, 32);
#define ARG(s) STMT_START { arg = (s); array_push_back(&args, &arg); } STMT_END
	ARG("redis-server");
	ARG("--port"); ARG(dec2str(server->port));
	ARG("--bind"); ARG("127.0.0.1");
	ARG("--save"); ARG("");
	ARG("--appendonly"); ARG("no");
	ARG("--dir"); ARG(server->dir);
	ARG("--unixsocket"); ARG(server->socket_path);
	ARG("--unixsocketperm"); ARG("700");
	ARG("--daemonize"); ARG("no");
	ARG("--logfile"); ARG(t_strconcat(server->dir, "/redis.log", NULL));
	if (server->password != NULL) {
		ARG("--requirepass"); ARG(server->password);
	}
#undef ARG
	array_append_zero(&args);
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		(void)dup2(fd, STDIN_FILENO);
		(void)dup2(fd, STDOUT_FILENO);
	}
	execv(redis_server_path, (char *const *)array_front(&args));
	fprintf(stderr, "execv(%s) failed: %m\n", redis_server_path);
	_exit(127);
}

/* Starts the server on its port (a new free one when port is 0).
   Returns FALSE when it did not come up. */
static bool test_redis_start(struct test_redis *server, in_port_t port)
{
	redisContext *ctx;
	unsigned int attempt, i;
	int status;

	for (attempt = 0; attempt < 5; attempt++) {
		server->port = port != 0 ? port : test_free_port();
		if ((server->pid = fork()) < 0)
			i_fatal("fork() failed: %m");
		if (server->pid == 0)
			test_redis_exec(server);
		for (i = 0; i < 250; i++) {
			if (waitpid(server->pid, &status, WNOHANG) ==
			    server->pid) {
				/* the port was taken meanwhile: another */
				server->pid = -1;
				break;
			}
			if ((ctx = test_redis_connect(server)) != NULL) {
				redisFree(ctx);
				return TRUE;
			}
			usleep(20 * 1000);
		}
		if (server->pid > 0) {
			(void)kill(server->pid, SIGKILL);
			(void)waitpid(server->pid, &status, 0);
			server->pid = -1;
		}
	}
	return FALSE;
}

static void test_redis_stop(struct test_redis *server, int signo)
{
	int status;

	if (server->pid <= 0)
		return;
	(void)kill(server->pid, SIGCONT);
	(void)kill(server->pid, signo);
	(void)waitpid(server->pid, &status, 0);
	server->pid = -1;
}

static void
test_redis_init(struct test_redis *server, const char *name,
		const char *password)
{
	i_zero(server);
	server->pid = -1;
	server->dir = i_strdup_printf("%s/%s", test_dir, name);
	if (mkdir(server->dir, 0700) < 0)
		i_fatal("mkdir(%s) failed: %m", server->dir);
	server->socket_path = i_strdup_printf("%s/redis.sock", server->dir);
	server->password = password;
}

static void test_redis_deinit(struct test_redis *server)
{
	test_redis_stop(server, SIGTERM);
	i_free_and_null(server->dir);
	i_free_and_null(server->socket_path);
}

static redisReply *admin_command(const char *format, ...)
{
	redisReply *reply;
	va_list args;

	va_start(args, format);
	reply = redisvCommand(admin, format, args);
	va_end(args);
	if (reply == NULL)
		i_fatal("admin connection: %s", admin->errstr);
	return reply;
}

static long long admin_integer(const char *format, ...)
{
	redisReply *reply;
	long long value;
	va_list args;

	va_start(args, format);
	reply = redisvCommand(admin, format, args);
	va_end(args);
	if (reply == NULL)
		i_fatal("admin connection: %s", admin->errstr);
	value = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1000;
	freeReplyObject(reply);
	return value;
}

static void admin_reconnect(void)
{
	if (admin != NULL)
		redisFree(admin);
	admin = test_redis_connect(&test_server);
	if (admin == NULL)
		i_fatal("cannot connect to the test's redis-server");
}

/*
 * The store, as loopguard-store.c drives it
 */

static const char *
test_location(const struct test_redis *server, const char *extra)
{
	return t_strdup_printf("redis:host=127.0.0.1:port=%u:prefix="
			       TEST_PREFIX "%s", server->port, extra);
}

static int
test_store_try_open(const char *location, const char *user,
		    unsigned int log_size, struct loopguard_store **store_r,
		    const char **error_r)
{
	struct loopguard_store_settings set;
	struct loopguard_store *store;

	i_zero(&set);
	set.location = location;
	set.username = user;
	set.log_size = log_size;
	set.event = test_event;
	if (loopguard_store_driver_redis.v.open(&set, &store, error_r) < 0)
		return -1;
	store->driver = &loopguard_store_driver_redis;
	store->event = test_event;
	*store_r = store;
	return 0;
}

static struct loopguard_store *
test_store_open(const char *location, const char *user)
{
	struct loopguard_store *store;
	const char *error;

	if (test_store_try_open(location, user, 100, &store, &error) < 0)
		i_fatal("open(%s) failed: %s", location, error);
	return store;
}

static void test_store_close(struct loopguard_store **_store)
{
	struct loopguard_store *store = *_store;

	*_store = NULL;
	store->driver->v.close(store);
}

static void test_begin_delivery(struct loopguard_store *store)
{
	const char *error;

	if (store->driver->v.delivery_begin(store, &error) < 0)
		i_fatal("delivery_begin() failed: %s", error);
}

static int test_commit(struct loopguard_store *store)
{
	const char *error;

	return store->driver->v.delivery_commit(store, &error);
}

static void test_abort(struct loopguard_store *store)
{
	store->driver->v.delivery_abort(store);
}

static void test_hash(unsigned int n, unsigned char hash_r[])
{
	memset(hash_r, 0, LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE);
	memcpy(hash_r, &n, sizeof(n));
	/* bytes Lua must carry through untouched */
	hash_r[6] = 0xff;
	hash_r[7] = 0x00;
}

static int
test_window(struct loopguard_store *store, const char *handle,
	    const char *key, const struct loopguard_window_params *params,
	    unsigned int msg, time_t now, bool record,
	    struct loopguard_window_result *result_r, const char **error_r)
{
	unsigned char hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];

	test_hash(msg, hash);
	i_zero(result_r);
	return store->driver->v.window_check(store, handle, key, params, hash,
					     now, record, result_r, error_r);
}

static unsigned int test_rand(void)
{
	/* xorshift: reproducible from the seed printed at the start */
	test_seed ^= test_seed << 13;
	test_seed ^= test_seed >> 17;
	test_seed ^= test_seed << 5;
	return test_seed;
}

static long long test_msecs_since(const struct timeval *start)
{
	struct timeval now;

	i_gettimeofday(&now);
	return timeval_diff_msecs(&now, start);
}

/*
 * Pure parts
 */

static void test_settings(void)
{
	struct loopguard_redis_settings set;
	const char *error, *path;
	pool_t pool = pool_alloconly_create("test", 1024);
	int fd;

	test_begin("redis: location parameters");
	test_assert(loopguard_redis_settings_parse(pool, "redis:", &set,
						   &error) == 0);
	test_assert(strcmp(set.host, "127.0.0.1") == 0 && set.port == 6379 &&
		    set.db == 0 && set.path == NULL &&
		    strcmp(set.prefix, "loopguard") == 0 &&
		    set.timeout_msecs == 1000 && set.password == NULL);
	test_assert(loopguard_redis_settings_parse(pool,
		"redis:host=10.0.0.1:port=6380:db=3:prefix=x:timeout_msecs=250",
		&set, &error) == 0);
	test_assert(strcmp(set.host, "10.0.0.1") == 0 && set.port == 6380 &&
		    set.db == 3 && strcmp(set.prefix, "x") == 0 &&
		    set.timeout_msecs == 250);
	test_assert(loopguard_redis_settings_parse(pool,
		"redis:socket=/run/redis.sock", &set, &error) == 0);
	test_assert(set.host == NULL &&
		    strcmp(set.path, "/run/redis.sock") == 0);
	test_assert(loopguard_redis_settings_parse(pool,
		"redis:path=/run/r.sock", &set, &error) == 0 &&
		set.path != NULL);

	/* a mistyped password key must not show the password */
	test_assert(loopguard_redis_settings_parse(pool,
		"redis:pasword=TopSecret", &set, &error) < 0);
	test_assert(strstr(error, "pasword") != NULL &&
		    strstr(error, "TopSecret") == NULL);
	test_assert(loopguard_redis_settings_parse(pool,
		"redis:TopSecret", &set, &error) < 0);
	test_assert(strstr(error, "TopSecret") == NULL);
	test_assert(loopguard_redis_settings_parse(pool,
		"redis:port=0", &set, &error) < 0);
	test_assert(loopguard_redis_settings_parse(pool,
		"redis:port=70000", &set, &error) < 0);
	test_assert(loopguard_redis_settings_parse(pool,
		"redis:timeout_msecs=0", &set, &error) < 0);
	test_assert(loopguard_redis_settings_parse(pool,
		"redis:host=a:socket=/b", &set, &error) < 0);

	path = t_strconcat(test_dir, "/password", NULL);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	test_assert(fd >= 0 && write(fd, "pw:with:colons\n", 15) == 15);
	i_close_fd(&fd);
	test_assert(loopguard_redis_settings_parse(pool,
		t_strconcat("redis:password_file=", path, NULL),
		&set, &error) == 0);
	test_assert(null_strcmp(set.password, "pw:with:colons") == 0);
	test_assert(loopguard_redis_settings_parse(pool,
		t_strconcat("redis:password=x:password_file=", path, NULL),
		&set, &error) < 0);
	test_assert(loopguard_redis_settings_parse(pool,
		"redis:password_file=/nonexistent/pw", &set, &error) < 0);
	pool_unref(&pool);
	test_end();
}

static void test_keys(void)
{
	const char *user, *rkey, *handle, *key;

	test_begin("redis: key layout");
	user = loopguard_redis_key_user(pool_datastack_create(), "lg",
					"alice@example.com");
	test_assert(strcmp(user, "lg:{alice@example.com}:") == 0);
	/* names that could end the tag or act as wildcards are hashed */
	test_assert(str_begins_with(loopguard_redis_key_user(
		pool_datastack_create(), "lg", "a}b"), "lg:{#"));
	test_assert(str_begins_with(loopguard_redis_key_user(
		pool_datastack_create(), "lg", "a*"), "lg:{#"));
	test_assert(strcmp(loopguard_redis_key_user(pool_datastack_create(),
		"lg", "a b"), loopguard_redis_key_user(
		pool_datastack_create(), "lg", "a c")) != 0);
	test_assert(strcmp(loopguard_redis_key_user(pool_datastack_create(),
		"", "u"), "{u}:") == 0);

	rkey = loopguard_redis_key_window(user, "h:1", "k:2");
	test_assert(strcmp(rkey, "lg:{alice@example.com}:w:3:h:1:k:2") == 0);
	test_assert(loopguard_redis_key_window_parse(user, rkey, strlen(rkey),
						     &handle, &key));
	test_assert(strcmp(handle, "h:1") == 0 && strcmp(key, "k:2") == 0);
	rkey = loopguard_redis_key_window(user, "", "");
	test_assert(loopguard_redis_key_window_parse(user, rkey, strlen(rkey),
						     &handle, &key));
	test_assert(*handle == '\0' && *key == '\0');
	rkey = "lg:{alice@example.com}:w:9:h:k";
	test_assert(!loopguard_redis_key_window_parse(user, rkey, strlen(rkey),
						      &handle, &key));
	test_assert(strcmp(loopguard_redis_key_pattern(user, TRUE, "h*"),
			   "lg:{alice@example.com}:w:2:h\\*:*") == 0);
	test_end();
}

/*
 * Windows
 */

struct test_model {
	buffer_t *payload;
};

static void
test_differential_corrupt(struct test_model *model, const char *rkey)
{
	unsigned char bytes[64];
	/* never empty: the model's empty payload stands for no key */
	unsigned int i, len = 1 + test_rand() % (sizeof(bytes) - 1);
	redisReply *reply;

	switch (test_rand() % 3) {
	case 0:
		/* garbage */
		for (i = 0; i < len; i++)
			bytes[i] = test_rand();
		buffer_set_used_size(model->payload, 0);
		buffer_append(model->payload, bytes, len);
		break;
	case 1:
		/* a valid payload cut short */
		if (model->payload->used > 1) {
			buffer_set_used_size(model->payload,
				1 + test_rand() % (model->payload->used - 1));
		}
		break;
	default:
		/* a lock or stamp written by a clock far ahead */
		if (model->payload->used >= 21) {
			unsigned char *p = buffer_get_modifiable_data(
				model->payload, NULL);
			p[14 + test_rand() % 2] = 0x7f;
		}
		break;
	}
	if (model->payload->used == 0)
		return;
	reply = admin_command("SET %s %b EX 3600", rkey,
			      model->payload->data, model->payload->used);
	freeReplyObject(reply);
}

static void
test_differential_params(struct loopguard_window_params *params)
{
	params->count = test_rand() % 100 == 0 ? 0 : 1 + test_rand() % 5;
	/* at least 30 s: no key may expire by Redis' own clock meanwhile */
	params->period = 30 + test_rand() % 300;
	params->lock = test_rand() % 2 == 0 ? 0 : 30 + test_rand() % 600;
}

static void test_differential_time(time_t *now, unsigned int period)
{
	unsigned int r = test_rand() % 100;

	if (r < 50)
		*now += test_rand() % (period / 2 + 1);
	else if (r < 62)
		*now += period + test_rand() % (2 * period);
	else if (r < 74)
		*now -= test_rand() % 120;
	else if (r < 80)
		*now -= LOOPGUARD_WINDOW_CLOCK_TOLERANCE + test_rand() % 2000;
	else if (r < 84)
		*now += 100000 + test_rand() % 100000;
}

/* Compares one step of Redis with loopguard_window_apply() on the same
   payload. Returns FALSE at the first difference. */
static bool
test_differential_step(struct loopguard_store *store, const char *user,
		       const char *key, struct test_model *model,
		       const struct loopguard_window_params *params,
		       time_t now, unsigned int msg, bool record)
{
	unsigned char hash[LOOPGUARD_WINDOW_MESSAGE_HASH_SIZE];
	struct loopguard_window_result c, r;
	buffer_t *new_payload = t_buffer_create(256);
	const char *rkey = loopguard_redis_key_window(user, "diff", key);
	const char *error;
	redisReply *reply;
	time_t expires = 0;
	long long ttl;
	bool written, same;

	test_hash(msg, hash);
	written = loopguard_window_apply(
		model->payload->used > 0 ? model->payload->data : NULL,
		model->payload->used, params, now, hash, record, new_payload,
		&expires, &c);
	if (test_window(store, "diff", key, params, msg, now, record, &r,
			&error) < 0) {
		i_error("window_check failed: %s", error);
		return FALSE;
	}
	if (written) {
		buffer_set_used_size(model->payload, 0);
		buffer_append_buf(model->payload, new_payload, 0, SIZE_MAX);
	}
	same = c.exceeded == r.exceeded &&
		c.count_in_window == r.count_in_window &&
		c.locked_until == r.locked_until &&
		c.already_counted == r.already_counted &&
		c.payload_ignored == r.payload_ignored;
	reply = admin_command("GET %s", rkey);
	if (model->payload->used == 0)
		same = same && reply->type == REDIS_REPLY_NIL;
	else {
		same = same && reply->type == REDIS_REPLY_STRING &&
			reply->len == model->payload->used &&
			memcmp(reply->str, model->payload->data,
			       reply->len) == 0;
	}
	freeReplyObject(reply);
	if (written) {
		ttl = admin_integer("TTL %s", rkey);
		same = same && ttl <= expires - now && ttl >= expires - now - 2;
	}
	if (!same) {
		i_error("seed %u: differs at now=%lld msg=%u record=%d "
			"count=%u period=%u lock=%u: C %d/%u/%lld/%d/%d, "
			"Redis %d/%u/%lld/%d/%d", test_seed, (long long)now,
			msg, record, params->count, params->period,
			params->lock, c.exceeded, c.count_in_window,
			(long long)c.locked_until, c.already_counted,
			c.payload_ignored, r.exceeded, r.count_in_window,
			(long long)r.locked_until, r.already_counted,
			r.payload_ignored);
	}
	return same;
}

static void test_window_differential(void)
{
	struct loopguard_window_params params;
	struct loopguard_store *store;
	struct test_model model;
	unsigned int seq, step, steps, purged, compared = 0;
	const char *user, *key, *error;
	bool ok = TRUE;
	time_t now;

	test_begin("redis: window script = loopguard_window_apply()");
	store = test_store_open(test_location(&test_server, ""), "diff");
	user = loopguard_redis_key_user(pool_datastack_create(), TEST_PREFIX,
					"diff");
	model.payload = buffer_create_dynamic(default_pool, 256);
	for (seq = 0; seq < 2000 && ok; seq++) T_BEGIN {
		buffer_set_used_size(model.payload, 0);
		test_differential_params(&params);
		now = 1000000000 + test_rand() % 1000000;
		key = t_strdup_printf("k%u", seq);
		steps = 1 + test_rand() % 16;
		for (step = 0; step < steps && ok; step++) {
			test_differential_time(&now, params.period);
			if (test_rand() % 20 == 0)
				test_differential_params(&params);
			if (test_rand() % 30 == 0) {
				test_differential_corrupt(&model,
					loopguard_redis_key_window(user,
						"diff", key));
			}
			ok = test_differential_step(store, user, key, &model,
				&params, test_rand() % 200 == 0 ? -1 : now,
				test_rand() % 5, test_rand() % 100 < 85);
			compared++;
		}
	} T_END;
	test_assert(ok);
	test_assert(compared > 10000);
	test_assert(store->driver->v.purge(store, 0, TRUE, &purged,
					   &error) == 0);
	test_assert(admin_integer("EXISTS %s", loopguard_redis_key_window(
		user, "diff", "k0")) == 0);
	buffer_free(&model.payload);
	test_store_close(&store);
	test_end();
}

static unsigned int test_concurrency_child(unsigned int child)
{
	struct loopguard_window_params params = {
		.count = 100, .period = 3600, .lock = 0
	};
	struct loopguard_window_result result;
	struct loopguard_store *store;
	const char *error;
	unsigned int i, passed = 0;

	store = test_store_open(test_location(&test_server, ""), "conc");
	for (i = 0; i < 40; i++) {
		if (test_window(store, "", "flood", &params, child * 1000 + i,
				test_now, TRUE, &result, &error) < 0)
			return 255;
		if (!result.exceeded)
			passed++;
	}
	test_store_close(&store);
	return passed;
}

static void test_window_concurrency(void)
{
	struct loopguard_window_params params = {
		.count = 100, .period = 3600, .lock = 0
	};
	struct loopguard_window_result result;
	struct loopguard_store *store;
	pid_t pids[8];
	unsigned int i, total = 0;
	const char *error;
	int status;

	test_begin("redis: exact counting, 8 processes on one key");
	for (i = 0; i < N_ELEMENTS(pids); i++) {
		if ((pids[i] = fork()) < 0)
			i_fatal("fork() failed: %m");
		if (pids[i] == 0)
			_exit(test_concurrency_child(i));
	}
	for (i = 0; i < N_ELEMENTS(pids); i++) {
		if (waitpid(pids[i], &status, 0) < 0)
			i_fatal("waitpid() failed: %m");
		test_assert_idx(WIFEXITED(status) &&
				WEXITSTATUS(status) <= 40, i);
		total += WEXITSTATUS(status);
	}
	/* 320 messages, each counted: exactly count of them passed */
	test_assert(total == 100);
	store = test_store_open(test_location(&test_server, ""), "conc");
	test_assert(test_window(store, "", "flood", &params, 99999,
				test_now, FALSE, &result, &error) == 0);
	test_assert(result.exceeded && result.count_in_window == 101);
	test_store_close(&store);
	test_end();
}

static void test_window_basics(void)
{
	struct loopguard_window_params params = {
		.count = 2, .period = 600, .lock = 300
	};
	struct loopguard_window_result result;
	struct loopguard_store *store;
	const char *error;
	time_t now = test_now;

	test_begin("redis: window, lock, :noupdate, counted once");
	store = test_store_open(test_location(&test_server, ""), "basic");
	test_assert(test_window(store, "h", "k", &params, 1, now, TRUE,
				&result, &error) == 0 && !result.exceeded);
	test_assert(test_window(store, "h", "k", &params, 2, now, TRUE,
				&result, &error) == 0 && !result.exceeded);
	/* :noupdate: would exceed, records nothing */
	test_assert(test_window(store, "h", "k", &params, 3, now, FALSE,
				&result, &error) == 0 && result.exceeded &&
		    result.locked_until == now + 300);
	/* a retry of message 2: counted once, same answer */
	test_assert(test_window(store, "h", "k", &params, 2, now, TRUE,
				&result, &error) == 0 && !result.exceeded &&
		    result.already_counted && result.count_in_window == 2);
	test_assert(test_window(store, "h", "k", &params, 3, now, TRUE,
				&result, &error) == 0 && result.exceeded &&
		    result.locked_until == now + 300);
	/* locked: now message 2 is over the limit too */
	test_assert(test_window(store, "h", "k", &params, 2, now + 1, TRUE,
				&result, &error) == 0 && result.exceeded &&
		    result.already_counted);
	/* count 0: off, and no round trip */
	params.count = 0;
	test_assert(test_window(store, "h", "k0", &params, 1, now, TRUE,
				&result, &error) == 0 && !result.exceeded);
	test_assert(admin_integer("EXISTS %s", loopguard_redis_key_window(
		loopguard_redis_key_user(pool_datastack_create(), TEST_PREFIX,
					 "basic"), "h", "k0")) == 0);
	test_store_close(&store);
	test_end();
}

/*
 * Fingerprints
 */

static void test_fingerprint(unsigned int n, unsigned char fp_r[])
{
	memset(fp_r, 0xa5, LOOPGUARD_STORE_FINGERPRINT_SIZE);
	memcpy(fp_r, &n, sizeof(n));
}

static int
test_fp_check(struct loopguard_store *store, unsigned int n,
	      unsigned int period, time_t now, bool *seen_r)
{
	unsigned char fp[LOOPGUARD_STORE_FINGERPRINT_SIZE];
	const char *error;

	test_fingerprint(n, fp);
	*seen_r = FALSE;
	return store->driver->v.fingerprint_check(store, fp, period, now,
						  seen_r, &error);
}

static const char *test_fp_key(const char *user, unsigned int n)
{
	unsigned char fp[LOOPGUARD_STORE_FINGERPRINT_SIZE];

	test_fingerprint(n, fp);
	return loopguard_redis_key_fingerprint(loopguard_redis_key_user(
		pool_datastack_create(), TEST_PREFIX, user), fp, sizeof(fp));
}

/* Replies to a commit are not waited for: poll for its effect. */
static bool test_wait_exists(const char *rkey, long long want)
{
	unsigned int i;

	for (i = 0; i < 100; i++) {
		if (admin_integer("EXISTS %s", rkey) == want)
			return TRUE;
		usleep(10 * 1000);
	}
	return FALSE;
}

static void test_fingerprints(void)
{
	struct loopguard_store *store;
	time_t now = test_now;
	long long ttl;
	bool seen;

	test_begin("redis: fingerprints, marked at the delivery's commit");
	store = test_store_open(test_location(&test_server, ""), "fp");

	/* outside a delivery: marked at once */
	test_assert(test_fp_check(store, 1, 600, now, &seen) == 0 && !seen);
	test_assert(test_fp_check(store, 1, 600, now + 1, &seen) == 0 &&
		    seen);
	ttl = admin_integer("TTL %s", test_fp_key("fp", 1));
	test_assert(ttl > 590 && ttl <= 600);

	/* in a delivery: only at commit */
	test_begin_delivery(store);
	test_assert(test_fp_check(store, 2, 600, now, &seen) == 0 && !seen);
	test_assert(admin_integer("EXISTS %s", test_fp_key("fp", 2)) == 0);
	/* the delivery sees its own sighting, as LMDB's transaction does */
	test_assert(test_fp_check(store, 2, 600, now, &seen) == 0 && seen);
	test_assert(test_commit(store) == 0);
	test_assert(test_wait_exists(test_fp_key("fp", 2), 1));
	ttl = admin_integer("TTL %s", test_fp_key("fp", 2));
	test_assert(ttl > 590 && ttl <= 600);

	/* a failed delivery never makes its retry a duplicate */
	test_begin_delivery(store);
	test_assert(test_fp_check(store, 3, 600, now, &seen) == 0 && !seen);
	test_abort(store);
	test_begin_delivery(store);
	test_assert(test_fp_check(store, 3, 600, now, &seen) == 0 && !seen);
	test_assert(test_commit(store) == 0);
	test_assert(test_wait_exists(test_fp_key("fp", 3), 1));
	test_begin_delivery(store);
	test_assert(test_fp_check(store, 3, 600, now + 10, &seen) == 0 &&
		    seen);
	test_abort(store);

	/* the period is the check's; an expiry never shrinks */
	freeReplyObject(admin_command("SET %s %lld EX 5000",
				      test_fp_key("fp", 4),
				      (long long)now - 1000));
	test_assert(test_fp_check(store, 4, 600, now, &seen) == 0 && !seen);
	test_assert(admin_integer("TTL %s", test_fp_key("fp", 4)) > 4000);
	freeReplyObject(admin_command("SET %s %lld EX 5000",
				      test_fp_key("fp", 5),
				      (long long)now - 1000));
	test_assert(test_fp_check(store, 5, 2000, now, &seen) == 0 && seen);
	test_store_close(&store);
	test_end();
}

/*
 * The log
 */

struct test_log_context {
	ARRAY(struct loopguard_store_event) events;
	pool_t pool;
};

static int
test_log_collect(const struct loopguard_store_event *event, void *context)
{
	struct test_log_context *ctx = context;
	struct loopguard_store_event copy = *event;

	copy.test = p_strdup(ctx->pool, event->test);
	copy.handle = p_strdup(ctx->pool, event->handle);
	copy.key = p_strdup(ctx->pool, event->key);
	copy.reasons = p_strdup(ctx->pool, event->reasons);
	copy.message_id = p_strdup(ctx->pool, event->message_id);
	array_push_back(&ctx->events, &copy);
	return 0;
}

static unsigned int
test_log_read(struct loopguard_store *store, time_t since,
	      struct test_log_context *ctx)
{
	const char *error;

	p_clear(ctx->pool);
	p_array_init(&ctx->events, ctx->pool, 16);
	if (store->driver->v.log_iterate(store, since, test_log_collect, ctx,
					 &error) < 0) {
		i_error("log_iterate failed: %s", error);
		return UINT_MAX;
	}
	return array_count(&ctx->events);
}

static int
test_log_append(struct loopguard_store *store, time_t time)
{
	struct loopguard_store_event event;
	const char *error;

	i_zero(&event);
	event.time = time;
	event.test = "ratelimit";
	event.handle = "h";
	event.key = "a\tb";
	event.reasons = "count";
	event.message_id = "<m@x>";
	event.count = 3;
	event.window = 60;
	event.locked_until = time + 10;
	return store->driver->v.log_append(store, &event, &error);
}

static void test_log(void)
{
	struct test_log_context ctx;
	struct loopguard_store *store;
	const struct loopguard_store_event *ev;
	const char *error, *rkey;
	unsigned int i;
	long long ttl;

	test_begin("redis: capped log");
	ctx.pool = pool_alloconly_create("test log", 4096);
	rkey = loopguard_redis_key_log(loopguard_redis_key_user(
		pool_datastack_create(), TEST_PREFIX, "log"));
	if (test_store_try_open(test_location(&test_server, ""), "log", 5,
				&store, &error) < 0)
		i_fatal("open failed: %s", error);
	for (i = 0; i < 8; i++)
		test_assert_idx(test_log_append(store, 100 + i) == 0, i);
	test_assert(test_log_read(store, 0, &ctx) == 5);
	ev = array_front(&ctx.events);
	test_assert(ev[0].time == 103 && ev[4].time == 107);
	test_assert(strcmp(ev[0].key, "a?b") == 0 &&
		    strcmp(ev[0].test, "ratelimit") == 0 &&
		    strcmp(ev[0].message_id, "<m@x>") == 0 &&
		    ev[0].count == 3 && ev[0].window == 60 &&
		    ev[0].locked_until == 113);
	test_assert(test_log_read(store, 106, &ctx) == 2);
	ttl = admin_integer("TTL %s", rkey);
	test_assert(ttl > 0 && ttl <= 30 * 24 * 3600);

	/* in a delivery: appended at commit, dropped by abort */
	test_begin_delivery(store);
	test_assert(test_log_append(store, 200) == 0);
	test_abort(store);
	test_assert(test_log_read(store, 0, &ctx) == 5);
	ev = array_front(&ctx.events);
	test_assert(ev[4].time == 107);
	test_begin_delivery(store);
	test_assert(test_log_append(store, 201) == 0);
	test_assert(test_log_append(store, 202) == 0);
	test_assert(test_commit(store) == 0);
	test_assert(test_log_read(store, 0, &ctx) == 5);
	ev = array_front(&ctx.events);
	test_assert(ev[4].time == 202 && ev[3].time == 201);
	test_store_close(&store);

	/* log_size 0 keeps nothing */
	if (test_store_try_open(test_location(&test_server, ""), "nolog", 0,
				&store, &error) < 0)
		i_fatal("open failed: %s", error);
	test_assert(test_log_append(store, 100) == 0);
	test_assert(test_log_read(store, 0, &ctx) == 0);
	test_store_close(&store);
	pool_unref(&ctx.pool);
	test_end();
}

/*
 * doveadm's view: iterate, delete, purge
 */

struct test_iterate_context {
	unsigned int count;
	unsigned int bad;
};

static int
test_iterate_count(const struct loopguard_store_window *window,
		   void *context)
{
	struct test_iterate_context *ctx = context;

	ctx->count++;
	if (window->state.count_in_window != 1 ||
	    window->state.count != 5 || window->state.period != 600 ||
	    !str_begins_with(window->key, "k"))
		ctx->bad++;
	return 0;
}

static unsigned int
test_iterate(struct loopguard_store *store, const char *handle)
{
	struct test_iterate_context ctx;
	const char *error;

	i_zero(&ctx);
	if (store->driver->v.window_iterate(store, handle, test_now,
					    test_iterate_count, &ctx,
					    &error) < 0) {
		i_error("window_iterate failed: %s", error);
		return UINT_MAX;
	}
	return ctx.bad == 0 ? ctx.count : UINT_MAX - 1;
}

static void test_maintenance(void)
{
	struct loopguard_window_params params = {
		.count = 5, .period = 600, .lock = 0
	};
	struct loopguard_window_result result;
	struct loopguard_store *store, *other;
	const char *error, *handle;
	unsigned int i, purged;
	bool ok = TRUE, seen;

	test_begin("redis: list, unblock and purge by SCAN");
	store = test_store_open(test_location(&test_server, ""), "many");
	other = test_store_open(test_location(&test_server, ""), "many2");
	/* more windows than one SCAN step returns */
	for (i = 0; i < 1200 && ok; i++) T_BEGIN {
		handle = i < 1170 ? "h1" : "h2";
		ok = test_window(store, handle, t_strdup_printf("k%u", i),
				 &params, i, test_now, TRUE, &result,
				 &error) == 0;
	} T_END;
	test_assert(ok);
	test_assert(test_window(store, "h*", "k", &params, 1, test_now,
				TRUE, &result, &error) == 0);
	test_assert(test_window(other, "h1", "k0", &params, 1, test_now,
				TRUE, &result, &error) == 0);
	test_assert(test_fp_check(store, 9, 600, test_now, &seen) == 0);

	test_assert(test_iterate(store, "h1") == 1170);
	test_assert(test_iterate(store, "h2") == 30);
	test_assert(test_iterate(store, "h*") == 1);
	test_assert(test_iterate(store, NULL) == 1201);

	test_assert(store->driver->v.window_delete(store, "h2", "k1170",
						   &error) == 1);
	test_assert(store->driver->v.window_delete(store, "h2", "k1170",
						   &error) == 0);
	test_assert(test_iterate(store, "h2") == 29);

	/* keys expire by their TTL: nothing else to purge */
	test_assert(store->driver->v.purge(store, test_now, FALSE, &purged,
					   &error) == 0 && purged == 0);
	test_assert(store->driver->v.purge(store, test_now, TRUE, &purged,
					   &error) == 0);
	test_assert(purged == 1200 + 1);
	test_assert(test_iterate(store, NULL) == 0);
	test_assert(admin_integer("EXISTS %s", test_fp_key("many", 9)) == 0);
	/* the other user's keys are left alone */
	test_assert(test_iterate(other, NULL) == 1);
	test_store_close(&store);
	test_store_close(&other);
	test_end();
}

static void test_every_key_tagged_and_expiring(void)
{
	redisReply *reply;
	const char *cursor = "0", *name, *tag_end;
	unsigned int i, keys = 0, bad = 0;

	test_begin("redis: every key has its user's hash tag and a TTL");
	do {
		reply = admin_command("SCAN %s COUNT 1000", cursor);
		cursor = t_strndup(reply->element[0]->str,
				   reply->element[0]->len);
		for (i = 0; i < reply->element[1]->elements; i++) {
			name = t_strndup(reply->element[1]->element[i]->str,
					 reply->element[1]->element[i]->len);
			keys++;
			tag_end = strchr(name, '}');
			if (!str_begins_with(name, TEST_PREFIX ":{") ||
			    tag_end == NULL || tag_end[1] != ':' ||
			    admin_integer("TTL %s", name) <= 0) {
				i_error("key %s: no tag or no TTL", name);
				bad++;
			}
		}
		freeReplyObject(reply);
	} while (strcmp(cursor, "0") != 0);
	test_assert(keys > 10);
	test_assert(bad == 0);
	test_end();
}

/*
 * Round trips
 */

/* protect-vacation.sieve's store calls: looptest's duplicate check,
   looptest :checks "auto" (no store), one ratelimit, vacation (its own
   store), and the log line of a test that fired. */
static unsigned int
test_delivery_round_trips(const char *location, unsigned int msg)
{
	struct loopguard_window_params params = {
		.count = 3, .period = 600, .lock = 0
	};
	struct loopguard_window_result result;
	struct loopguard_store *store;
	unsigned int before, after;
	const char *error;
	bool seen;

	store = test_store_open(location, "rt");
	before = loopguard_store_redis_round_trips(store);
	test_begin_delivery(store);
	if (test_fp_check(store, msg, 600, test_now, &seen) < 0 ||
	    test_window(store, "vacation", "sender@example.org", &params,
			msg, test_now, TRUE, &result, &error) < 0 ||
	    test_log_append(store, test_now) < 0 ||
	    test_commit(store) < 0) {
		test_store_close(&store);
		return UINT_MAX;
	}
	after = loopguard_store_redis_round_trips(store);
	test_store_close(&store);
	return after - before;
}

static void test_round_trips(void)
{
	const char *location = test_location(&test_server, "");
	struct loopguard_store *store;
	struct loopguard_window_result result;
	struct loopguard_window_params params = {
		.count = 3, .period = 600, .lock = 0
	};
	unsigned int before;
	const char *error;

	test_begin("redis: at most 2 round trips per delivery");
	/* a new connection each time: AUTH, SELECT and SCRIPT LOAD ride
	   with the first request */
	test_assert(test_delivery_round_trips(t_strconcat(location, ":db=1",
						      NULL), 1) == 2);
	/* a long-lived process: the last commit's replies are read with
	   the next delivery's first request */
	loopguard_redis_conn_keep_idle(TRUE);
	test_assert(test_delivery_round_trips(location, 2) == 2);
	test_assert(test_delivery_round_trips(location, 3) == 2);
	test_assert(test_delivery_round_trips(location, 4) == 2);

	/* a Redis that forgot the script: one more, once */
	freeReplyObject(admin_command("SCRIPT FLUSH"));
	store = test_store_open(location, "rt");
	before = loopguard_store_redis_round_trips(store);
	test_assert(test_window(store, "x", "y", &params, 1, test_now,
				TRUE, &result, &error) == 0);
	test_assert(loopguard_store_redis_round_trips(store) - before == 2);
	before = loopguard_store_redis_round_trips(store);
	test_assert(test_window(store, "x", "y", &params, 2, test_now,
				TRUE, &result, &error) == 0 &&
		    result.count_in_window == 2);
	test_assert(loopguard_store_redis_round_trips(store) - before == 1);
	test_store_close(&store);
	loopguard_redis_conn_keep_idle(FALSE);
	test_end();
}

/*
 * Connections: password, socket, fork, faults
 */

static int
test_try_window(const char *location, const char **error_r)
{
	struct loopguard_window_params params = {
		.count = 3, .period = 600, .lock = 0
	};
	struct loopguard_window_result result;
	struct loopguard_store *store;
	int ret;

	if (test_store_try_open(location, "conn", 10, &store, error_r) < 0)
		return -1;
	ret = test_window(store, "h", "k", &params, test_rand(), test_now,
			  TRUE, &result, error_r);
	if (ret < 0)
		*error_r = t_strdup(*error_r);
	test_store_close(&store);
	return ret;
}

static void test_password(void)
{
	struct test_redis server;
	const char *location, *path, *error;
	int fd;

	test_begin("redis: password and password_file, never shown");
	test_redis_init(&server, "auth", TEST_PASSWORD);
	test_assert(test_redis_start(&server, 0));
	location = test_location(&server, "");
	test_assert(test_try_window(t_strconcat(location,
		":password=" TEST_PASSWORD, NULL), &error) == 0);

	path = t_strconcat(server.dir, "/pw", NULL);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	test_assert(fd >= 0 && write(fd, TEST_PASSWORD "\n",
				     strlen(TEST_PASSWORD) + 1) ==
		    (ssize_t)strlen(TEST_PASSWORD) + 1);
	i_close_fd(&fd);
	test_assert(test_try_window(t_strconcat(location, ":password_file=",
						path, NULL), &error) == 0);

	test_assert(test_try_window(t_strconcat(location,
		":password=Wrong" TEST_PASSWORD, NULL), &error) < 0);
	test_assert(strstr(error, "AUTH") != NULL);
	test_assert(strstr(error, TEST_PASSWORD) == NULL);
	test_assert(test_try_window(location, &error) < 0);
	test_assert(strstr(error, "NOAUTH") != NULL);
	test_redis_deinit(&server);
	test_end();
}

static void test_unix_socket(void)
{
	const char *error;

	test_begin("redis: unix socket");
	test_assert(test_try_window(t_strdup_printf(
		"redis:socket=%s:prefix=" TEST_PREFIX,
		test_server.socket_path), &error) == 0);
	test_assert(test_try_window(t_strdup_printf(
		"redis:socket=%s/nonexistent:prefix=" TEST_PREFIX,
		test_server.dir), &error) < 0);
	test_end();
}

static long long test_client_id(const struct loopguard_redis_settings *set)
{
	static const char *const argv[] = { "CLIENT", "ID" };
	struct loopguard_redis_conn *conn;
	redisReply *reply;
	const char *error;
	long long id = -1;

	conn = loopguard_redis_conn_get(set, NULL, test_event);
	if (loopguard_redis_conn_append(conn, 2, argv, NULL, &error) == 0 &&
	    loopguard_redis_conn_exchange(conn, 1, &reply, &error) == 0) {
		if (reply->type == REDIS_REPLY_INTEGER)
			id = reply->integer;
		freeReplyObject(reply);
	}
	loopguard_redis_conn_release(&conn);
	return id;
}

static void test_fork(void)
{
	struct loopguard_redis_settings set;
	const char *error;
	long long id;
	pid_t pid;
	int status;

	test_begin("redis: a connection is never used across fork()");
	test_assert(loopguard_redis_settings_parse(pool_datastack_create(),
		test_location(&test_server, ""), &set, &error) == 0);
	loopguard_redis_conn_keep_idle(TRUE);
	id = test_client_id(&set);
	test_assert(id > 0 && test_client_id(&set) == id);
	if ((pid = fork()) < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		long long child_id = test_client_id(&set);

		_exit(child_id > 0 && child_id != id ? 0 : 1);
	}
	test_assert(waitpid(pid, &status, 0) == pid &&
		    WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* and the parent's is intact */
	test_assert(test_client_id(&set) == id);
	loopguard_redis_conn_keep_idle(FALSE);
	test_end();
}

static void test_timeout(void)
{
	struct loopguard_window_params params = {
		.count = 3, .period = 600, .lock = 0
	};
	struct loopguard_window_result result;
	struct loopguard_store *store;
	struct timeval start;
	const char *error, *location;
	long long msecs;

	test_begin("redis: a hanging Redis costs one timeout per delivery");
	location = test_location(&test_server, ":timeout_msecs=300");
	store = test_store_open(location, "slow");
	test_assert(test_window(store, "h", "k", &params, 1, test_now,
				TRUE, &result, &error) == 0);
	test_assert(kill(test_server.pid, SIGSTOP) == 0);

	test_begin_delivery(store);
	i_gettimeofday(&start);
	test_assert(test_window(store, "h", "k", &params, 2, test_now,
				TRUE, &result, &error) < 0);
	msecs = test_msecs_since(&start);
	test_assert(msecs >= 250 && msecs < TEST_TIMEOUT_BOUND_MSECS);
	test_assert(strstr(error, "timeout_msecs=300") != NULL);
	/* the rest of the delivery does not wait again */
	i_gettimeofday(&start);
	test_assert(test_window(store, "h", "k", &params, 3, test_now,
				TRUE, &result, &error) < 0);
	test_assert(test_commit(store) < 0);
	test_assert(test_msecs_since(&start) < 100);
	test_store_close(&store);

	/* connecting to it is bounded as well */
	i_gettimeofday(&start);
	test_assert(test_try_window(location, &error) < 0);
	test_assert(test_msecs_since(&start) < TEST_TIMEOUT_BOUND_MSECS);

	test_assert(kill(test_server.pid, SIGCONT) == 0);
	test_assert(test_try_window(location, &error) == 0);
	test_end();
}

static void test_server_restart(void)
{
	struct loopguard_window_params params = {
		.count = 3, .period = 600, .lock = 0
	};
	struct loopguard_window_result result;
	struct loopguard_store *store;
	struct timeval start;
	const char *error, *location;
	in_port_t port = test_server.port;
	bool seen;

	test_begin("redis: Redis restarted, down, then back");
	location = test_location(&test_server, ":timeout_msecs=300");
	loopguard_redis_conn_keep_idle(TRUE);
	test_assert(test_try_window(location, &error) == 0);

	/* restarted under an idle connection: the next delivery does not
	   fail for it */
	test_redis_stop(&test_server, SIGKILL);
	test_assert(test_redis_start(&test_server, port));
	admin_reconnect();
	store = test_store_open(location, "down");
	test_begin_delivery(store);
	test_assert(test_fp_check(store, 1, 600, test_now, &seen) == 0);
	test_assert(test_window(store, "h", "k", &params, 2, test_now,
				TRUE, &result, &error) == 0);
	test_assert(test_commit(store) == 0);
	test_store_close(&store);

	/* down: calls fail at once, and no call of the delivery waits
	   twice */
	test_redis_stop(&test_server, SIGKILL);
	store = test_store_open(location, "down");
	test_begin_delivery(store);
	i_gettimeofday(&start);
	test_assert(test_fp_check(store, 1, 600, test_now, &seen) < 0);
	test_assert(test_window(store, "h", "k", &params, 2, test_now,
				TRUE, &result, &error) < 0);
	test_assert(strstr(error, "Redis") != NULL);
	test_assert(test_msecs_since(&start) < TEST_TIMEOUT_BOUND_MSECS);
	test_abort(store);
	test_store_close(&store);

	/* back: the next delivery connects again */
	test_assert(test_redis_start(&test_server, port));
	admin_reconnect();
	store = test_store_open(location, "down");
	test_begin_delivery(store);
	test_assert(test_fp_check(store, 1, 600, test_now, &seen) == 0 &&
		    !seen);
	test_assert(test_window(store, "h", "k", &params, 2, test_now,
				TRUE, &result, &error) == 0);
	test_assert(test_commit(store) == 0);
	test_store_close(&store);
	loopguard_redis_conn_keep_idle(FALSE);
	test_end();
}

static void test_exists(void)
{
	struct loopguard_store_settings set;
	const char *error;

	test_begin("redis: exists() creates nothing and needs no server");
	i_zero(&set);
	set.location = "redis:host=127.0.0.1:port=1";
	set.username = "nobody-yet";
	test_assert(loopguard_store_driver_redis.v.exists(&set, &error) == 1);
	set.location = "redis:bogus=1";
	test_assert(loopguard_store_driver_redis.v.exists(&set, &error) < 0);
	test_assert(loopguard_store_driver_redis.claims("redis:"));
	test_assert(!loopguard_store_driver_redis.claims("/home/u/.lg"));
	test_end();
}

static void test_setup(void)
{
	test_begin("redis: a redis-server of the test's own");
	/* built with Redis: its tests must run, not be skipped */
	redis_server_path = test_redis_find_server();
	if (redis_server_path == NULL) {
		i_fatal("redis-server not found (install redis-tools, or set "
			"LOOPGUARD_REDIS_SERVER)");
	}
	test_redis_init(&test_server, "main", NULL);
	if (!test_redis_start(&test_server, 0))
		i_fatal("redis-server did not start (see %s)", test_server.dir);
	admin_reconnect();
	test_event = event_create(NULL);
	test_now = time(NULL);
	test_assert(test_server.pid > 0);
	test_end();
}

static void test_teardown(void)
{
	const char *error;

	test_begin("redis: stopping the test's redis-server");
	event_unref(&test_event);
	redisFree(admin);
	test_redis_deinit(&test_server);
	if (unlink_directory(test_dir, UNLINK_DIRECTORY_FLAG_RMDIR,
			     &error) < 0)
		i_error("%s", error);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_setup,
		test_settings,
		test_keys,
		test_exists,
		test_window_basics,
		test_window_differential,
		test_window_concurrency,
		test_fingerprints,
		test_log,
		test_round_trips,
		test_every_key_tagged_and_expiring,
		test_maintenance,
		test_password,
		test_unix_socket,
		test_fork,
		test_timeout,
		test_server_restart,
		test_teardown,
		NULL
	};
	char template[] = "/tmp/test-store-redis.XXXXXX";
	const char *seed;

	if (mkdtemp(template) == NULL) {
		fprintf(stderr, "mkdtemp() failed: %m\n");
		return 1;
	}
	test_dir = template;
	seed = getenv("LOOPGUARD_TEST_SEED");
	test_seed = seed != NULL ? (unsigned int)strtoul(seed, NULL, 10) :
		((unsigned int)time(NULL) | 1);
	printf("seed %u (LOOPGUARD_TEST_SEED repeats it)\n", test_seed);
	return test_run(test_functions);
}

#endif
