/* Runs the "auto" checks over the person-written messages of tests/corpus:
   none of them may fire (see tests/corpus/README). */

#include "lib.h"
#include "str.h"
#include "istream.h"
#include "istream-zlib.h"
#include "test-common.h"
#include "loopguard-compat.h"
#include "looptest-checks.h"

#define TEST_CORPUS_MIN_MESSAGES 1000

/* run-tests.sh passes the fixture directory, tests/fixtures/looptest; the
   corpus lies beside it */
static const char *fixture_dir = "tests/fixtures/looptest";
static const char *const test_user_addresses[] = {
	"alice@example.org", NULL
};

/* Returns the header's value for the report, or "". */
static const char *test_header(string_t *msg, const char *name)
{
	const char *p = str_c(msg), *end;
	size_t len = strlen(name);

	for (;;) {
		if (strncasecmp(p, name, len) == 0 && p[len] == ':') {
			end = strchr(p, '\n');
			return t_strdup_until(p + len + 1,
					      end == NULL ? p + strlen(p) : end);
		}
		p = strchr(p, '\n');
		if (p == NULL || p[1] == '\n')
			return "";
		p++;
	}
}

/* The envelope sender is left unknown: then From is looked at as well,
   and the archive has no envelope to give anyway. */
static unsigned int test_corpus_message(string_t *msg)
{
	struct looptest_envelope envelope = {
		.user_addresses = test_user_addresses,
		.hops_threshold = 30,
	};
	struct looptest_result result;
	struct istream *input;
	const char *error;

	input = i_stream_create_from_data(str_data(msg), str_len(msg));
	if (looptest_checks_evaluate(input, &envelope, LOOPTEST_GROUP_AUTO,
				     &result, &error) < 0)
		i_fatal("evaluate: %s", error);
	i_stream_unref(&input);
	if (result.fired != 0) {
		i_error("corpus message %s (%s) fired: %s",
			test_header(msg, "Message-ID"),
			test_header(msg, "Subject"),
			looptest_checks_reasons(result.fired));
	}
	return result.fired;
}

/* Reads an mboxrd file: "From " lines separate the messages, and one '>'
   is dropped from the ">From " lines inside them. */
static void
test_corpus_mbox(const char *path, unsigned int *count_r,
		 unsigned int *flagged_r)
{
	struct istream *file, *input;
	string_t *msg = t_str_new(65536);
	const char *line;

	file = i_stream_create_file(path, 65536);
	input = i_stream_create_gz(file);
	i_stream_unref(&file);
	while ((line = i_stream_read_next_line(input)) != NULL) {
		if (str_begins_with(line, "From ")) {
			if (str_len(msg) > 0) T_BEGIN {
				(*count_r)++;
				if (test_corpus_message(msg) != 0)
					(*flagged_r)++;
			} T_END;
			str_truncate(msg, 0);
			continue;
		}
		if (line[0] == '>' && str_begins_with(line + strspn(line, ">"),
						 "From "))
			line++;
		str_append(msg, line);
		str_append_c(msg, '\n');
	}
	if (input->stream_errno != 0) {
		i_error("%s: %s", path, i_stream_get_error(input));
		test_assert(FALSE);
	}
	if (str_len(msg) > 0) {
		(*count_r)++;
		if (test_corpus_message(msg) != 0)
			(*flagged_r)++;
	}
	i_stream_unref(&input);
}

static void test_looptest_corpus(void)
{
	static const char *const files[] = {
		"person/linux-mips.mbox.gz",
	};
	unsigned int i, count = 0, flagged = 0;

	test_begin("looptest auto on person-written corpus");
	for (i = 0; i < N_ELEMENTS(files); i++) {
		test_corpus_mbox(t_strconcat(fixture_dir, "/../../corpus/",
					     files[i], NULL),
				 &count, &flagged);
	}
	test_assert(flagged == 0);
	/* a missing or truncated corpus must not pass silently */
	test_assert(count >= TEST_CORPUS_MIN_MESSAGES);
	test_end();
}

int main(int argc, char *argv[])
{
	static void (*const test_functions[])(void) = {
		test_looptest_corpus,
		NULL
	};

	if (argc > 1)
		fixture_dir = argv[1];
	return test_run(test_functions);
}
