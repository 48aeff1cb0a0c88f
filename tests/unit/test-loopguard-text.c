/* Unit tests of sanitizing and capping stored and shown text. */

#include "lib.h"
#include "str.h"
#include "test-common.h"

#include "loopguard-compat.h"
#include "loopguard-text.h"

static const char *text_fill(size_t len, char c)
{
	string_t *str = t_str_new(len + 1);
	size_t i;

	for (i = 0; i < len; i++)
		str_append_c(str, c);
	return str_c(str);
}

static bool text_is_safe(const char *str)
{
	const unsigned char *p;

	for (p = (const unsigned char *)str; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f ||
		    (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
			return FALSE;
	}
	return TRUE;
}

static void test_text_sanitize(void)
{
	const char *long_str = text_fill(5000, 'x');
	const char *out;

	test_begin("text: control characters are replaced, length capped");
	out = "plain <id@example.com> \"quoted\" 'single'";
	test_assert(loopguard_text_sanitize(out, LOOPGUARD_TEXT_MAX) == out);
	test_assert_strcmp(loopguard_text_sanitize(
		"a\nb\r\nc\td\x1b]0;title\x07" "e", 200),
		"a?b??c?d?]0;title?e");
	/* DEL and the C1 controls (here CSI, U+009B) */
	test_assert_strcmp(loopguard_text_sanitize("a\x7f" "b\xc2\x9b" "2J",
						   200), "a?b?2J");
	/* other UTF-8 stays */
	test_assert_strcmp(loopguard_text_sanitize("gr\xc3\xbc\xc3\x9f", 200),
			   "gr\xc3\xbc\xc3\x9f");
	out = loopguard_text_sanitize(long_str, LOOPGUARD_TEXT_MAX);
	test_assert(strlen(out) <= LOOPGUARD_TEXT_MAX);
	test_assert(str_begins_with(out, "xxx") &&
		    strcmp(out + strlen(out) - 3, "...") == 0);
	test_end();
}

static void test_text_stored_name(void)
{
	const char *long1 = t_strconcat(text_fill(3000, 'k'), "1", NULL);
	const char *long2 = t_strconcat(text_fill(3000, 'k'), "2", NULL);
	const char *n1, *n2, *n3;

	test_begin("text: stored names are safe, short and still distinct");
	n1 = "sender@example.com";
	test_assert(loopguard_text_stored_name(n1) == n1);
	n1 = loopguard_text_stored_name(long1);
	n2 = loopguard_text_stored_name(long2);
	test_assert(strlen(n1) <= LOOPGUARD_TEXT_MAX);
	test_assert(strlen(n2) <= LOOPGUARD_TEXT_MAX);
	test_assert(strcmp(n1, n2) != 0);
	test_assert_strcmp(n1, loopguard_text_stored_name(long1));
	/* a newline and a tab in place of one another: not the same key,
	   and neither is the literal "?" */
	n1 = loopguard_text_stored_name("a\nb");
	n2 = loopguard_text_stored_name("a\tb");
	n3 = loopguard_text_stored_name("a?b");
	test_assert(text_is_safe(n1) && text_is_safe(n2));
	test_assert(strcmp(n1, n2) != 0 && strcmp(n1, n3) != 0);
	test_assert(str_begins_with(n1, "a?b #"));
	/* a stored name is stored as it is: unblock may be given either */
	test_assert(loopguard_text_stored_name(n1) == n1);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_text_sanitize,
		test_text_stored_name,
		NULL
	};
	return test_run(test_functions);
}
