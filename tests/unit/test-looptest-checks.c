/* Unit tests of the looptest checks, including the tests/fixtures corpus. */

#include "lib.h"
#include "str.h"
#include "buffer.h"
#include "istream.h"
#include "test-common.h"
#include "looptest-checks.h"

#define TEST_ALL_CHECKS \
	(LOOPTEST_GROUP_LOOP | LOOPTEST_GROUP_AUTO | \
	 LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_SELF))
#define TEST_BIT(name) LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_##name)
#define TEST_USER "alice@example.org"

static const char *fixture_dir = "tests/fixtures/looptest";
static const char *const test_user_addresses[] = {
	TEST_USER, "alice.smith@example.org", NULL
};

static int
test_eval_data(const void *data, size_t size, const char *sender,
	       unsigned int checks, struct looptest_result *result_r)
{
	struct looptest_envelope envelope = {
		.sender = sender,
		.user_addresses = test_user_addresses,
		.hops_threshold = 30,
	};
	struct istream *input;
	const char *error;
	int ret;

	input = i_stream_create_from_data(data, size);
	ret = looptest_checks_evaluate(input, &envelope, checks, result_r,
				       &error);
	i_stream_unref(&input);
	return ret;
}

/* Returns the fired checks of a message given as a string. */
static unsigned int
test_fired(const char *msg, const char *sender, unsigned int checks)
{
	struct looptest_result result;

	test_assert(test_eval_data(msg, strlen(msg), sender, checks,
				   &result) == 0);
	return result.fired;
}

static void
test_fingerprint(const char *msg, unsigned char fp[LOOPTEST_FINGERPRINT_SIZE])
{
	struct looptest_result result;

	test_assert(test_eval_data(msg, strlen(msg), NULL,
				   TEST_BIT(DUPLICATE), &result) == 0);
	test_assert(result.fired == 0);
	memcpy(fp, result.fingerprint, LOOPTEST_FINGERPRINT_SIZE);
}

static bool test_same_fingerprint(const char *msg1, const char *msg2)
{
	unsigned char fp1[LOOPTEST_FINGERPRINT_SIZE];
	unsigned char fp2[LOOPTEST_FINGERPRINT_SIZE];

	test_fingerprint(msg1, fp1);
	test_fingerprint(msg2, fp2);
	return memcmp(fp1, fp2, sizeof(fp1)) == 0;
}

static void test_looptest_names(void)
{
	static const struct {
		const char *name;
		unsigned int checks;
	} names[] = {
		{ "hops", TEST_BIT(HOPS) },
		{ "marker", TEST_BIT(MARKER) },
		{ "duplicate", TEST_BIT(DUPLICATE) },
		{ "auto-submitted", TEST_BIT(AUTO_SUBMITTED) },
		{ "precedence", TEST_BIT(PRECEDENCE) },
		{ "suppress", TEST_BIT(SUPPRESS) },
		{ "list", TEST_BIT(LIST) },
		{ "bounce", TEST_BIT(BOUNCE) },
		{ "system", TEST_BIT(SYSTEM) },
		{ "autoreply", TEST_BIT(AUTOREPLY) },
		{ "self", TEST_BIT(SELF) },
		{ "loop", LOOPTEST_GROUP_LOOP },
		{ "auto", LOOPTEST_GROUP_AUTO },
		{ "HOPS", TEST_BIT(HOPS) },
		{ "Auto-Submitted", TEST_BIT(AUTO_SUBMITTED) },
		{ "AUTO", LOOPTEST_GROUP_AUTO },
		{ "Loop", LOOPTEST_GROUP_LOOP },
	};
	static const char *const unknown[] = {
		"", "hop", "loops", "auto_submitted", "autosubmitted",
		"all", "self ", " list", "auto-reply",
	};
	unsigned int i, checks;

	test_begin("looptest names");
	for (i = 0; i < N_ELEMENTS(names); i++) {
		checks = 0;
		test_assert_idx(looptest_checks_parse_name(names[i].name,
							   &checks), i);
		test_assert_idx(checks == names[i].checks, i);
	}
	for (i = 0; i < N_ELEMENTS(unknown); i++) {
		test_assert_idx(!looptest_checks_parse_name(unknown[i],
							    &checks), i);
	}
	for (i = 0; i < LOOPTEST_CHECK_COUNT; i++) {
		test_assert_idx(looptest_checks_parse_name(
			looptest_check_name(i), &checks), i);
		test_assert_idx(checks == LOOPTEST_CHECK_BIT(i), i);
	}
	/* self is opt-in: in no group and not in the default */
	test_assert((LOOPTEST_GROUP_LOOP & TEST_BIT(SELF)) == 0);
	test_assert((LOOPTEST_GROUP_AUTO & TEST_BIT(SELF)) == 0);
	test_assert(LOOPTEST_CHECKS_DEFAULT == LOOPTEST_GROUP_LOOP);

	test_assert_strcmp(looptest_checks_valid_names(),
		"hops, marker, duplicate, auto-submitted, precedence, "
		"suppress, list, bounce, system, autoreply, self, loop, auto");
	test_end();
}

static void test_looptest_reasons(void)
{
	test_begin("looptest reasons");
	test_assert_strcmp(looptest_checks_reasons(0), "");
	test_assert_strcmp(looptest_checks_reasons(TEST_BIT(SELF) |
						   TEST_BIT(HOPS) |
						   TEST_BIT(BOUNCE)),
			   "hops bounce self");
	test_assert_strcmp(looptest_checks_reasons(LOOPTEST_GROUP_LOOP),
			   "hops marker duplicate");
	test_assert_strcmp(looptest_checks_reasons(LOOPTEST_GROUP_AUTO),
			   "auto-submitted precedence suppress list bounce "
			   "system autoreply");
	test_assert_strcmp(looptest_checks_reasons(TEST_BIT(AUTOREPLY) |
						   TEST_BIT(MARKER)),
			   "marker autoreply");
	/* bits beyond the known checks are ignored */
	test_assert_strcmp(looptest_checks_reasons(
		LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_COUNT) | TEST_BIT(LIST)),
		"list");
	test_end();
}

static void test_looptest_fingerprint(void)
{
	static const char *msg =
		"From: Bob Example <bob@example.com>\n"
		"To: alice@example.org\n"
		"Subject: Lunch on Friday?\n"
		"Date: Tue, 4 Jun 2024 10:11:12 +0200\n"
		"Message-ID: <a1@example.com>\n"
		"\n"
		"Shall we meet at noon?\n";
	unsigned char fp1[LOOPTEST_FINGERPRINT_SIZE];
	unsigned char fp2[LOOPTEST_FINGERPRINT_SIZE];
	struct looptest_result result;

	test_begin("looptest fingerprint");
	/* Message-ID and other headers are not part of it */
	test_assert(test_same_fingerprint(msg,
		"Received: from x by y; Tue, 4 Jun 2024 10:11:13 +0200\n"
		"From: Bob Example <bob@example.com>\n"
		"To: alice@example.org, carol@example.net\n"
		"Subject: Lunch on Friday?\n"
		"Date: Tue, 4 Jun 2024 10:11:12 +0200\n"
		"Message-ID: <resent-b2@example.com>\n"
		"\n"
		"Shall we meet at noon?\n"));
	/* From is compared as a lower-cased address */
	test_assert(test_same_fingerprint(msg,
		"From: \"BOB\" <Bob@EXAMPLE.com>\n"
		"Subject: Lunch on Friday?\n"
		"Date: Tue, 4 Jun 2024 10:11:12 +0200\n"
		"\n"
		"Shall we meet at noon?\n"));
	/* line ends, refolding and encoded words do not matter */
	test_assert(test_same_fingerprint(msg,
		"From: bob@example.com\r\n"
		"Subject: =?UTF-8?Q?Lunch?= on\r\n\tFriday?\r\n"
		"Date:  Tue, 4 Jun 2024\r\n 10:11:12 +0200 \r\n"
		"\r\n"
		"Shall we meet at noon?\r\n"));
	/* but the content does */
	test_assert(!test_same_fingerprint(msg,
		"From: bob@example.com\n"
		"Subject: Lunch on Friday?\n"
		"Date: Tue, 4 Jun 2024 10:11:12 +0200\n"
		"\n"
		"Shall we meet at one?\n"));
	test_assert(!test_same_fingerprint(msg,
		"From: bob@example.com\n"
		"Subject: Lunch on Friday?\n"
		"Date: Tue, 4 Jun 2024 10:11:12 +0200\n"
		"\n"
		"Shall we meet at noon?\n\n"));
	test_assert(!test_same_fingerprint(msg,
		"From: bob@example.net\n"
		"Subject: Lunch on Friday?\n"
		"Date: Tue, 4 Jun 2024 10:11:12 +0200\n"
		"\n"
		"Shall we meet at noon?\n"));
	test_assert(!test_same_fingerprint(msg,
		"From: bob@example.com\n"
		"Subject: Lunch on Saturday?\n"
		"Date: Tue, 4 Jun 2024 10:11:12 +0200\n"
		"\n"
		"Shall we meet at noon?\n"));
	test_assert(!test_same_fingerprint(msg,
		"From: bob@example.com\n"
		"Subject: Lunch on Friday?\n"
		"Date: Tue, 4 Jun 2024 10:11:13 +0200\n"
		"\n"
		"Shall we meet at noon?\n"));
	/* a byte cannot move from one field to the next unnoticed */
	test_assert(!test_same_fingerprint(
		"Subject: ab\nDate: c\n\nx", "Subject: a\nDate: bc\n\nx"));
	test_assert(!test_same_fingerprint(
		"Subject: a\nDate: b\n\nx", "Subject: a\nDate: bx\n\n"));
	/* a lone CR is kept */
	test_assert(!test_same_fingerprint("Subject: a\n\nx\ry\n",
					   "Subject: a\n\nxy\n"));
	test_assert(!test_same_fingerprint("Subject: a\n\nx\r",
					   "Subject: a\n\nx"));
	/* MIME part headers and boundaries are body */
	test_assert(!test_same_fingerprint(
		"Content-Type: multipart/mixed; boundary=b\n\n"
		"--b\nContent-Type: text/plain\n\nhi\n--b--\n",
		"Content-Type: multipart/mixed; boundary=b\n\n"
		"--b\nContent-Type: text/html\n\nhi\n--b--\n"));
	test_assert(!test_same_fingerprint(
		"Content-Type: multipart/mixed; boundary=b\n\n"
		"preamble\n--b\n\nhi\n--b--\n",
		"Content-Type: multipart/mixed; boundary=b\n\n"
		"preamblE\n--b\n\nhi\n--b--\n"));
	test_assert(!test_same_fingerprint(
		"Content-Type: multipart/mixed; boundary=b\n\n"
		"--b\n\nhi\n--b--\nepilogue\n",
		"Content-Type: multipart/mixed; boundary=b\n\n"
		"--b\n\nhi\n--b--\nepiloguE\n"));

	/* the same whatever else is selected */
	test_fingerprint(msg, fp1);
	test_assert(test_eval_data(msg, strlen(msg), "", TEST_ALL_CHECKS,
				   &result) == 0);
	memcpy(fp2, result.fingerprint, sizeof(fp2));
	test_assert(memcmp(fp1, fp2, sizeof(fp1)) == 0);
	/* duplicate never fires here: it needs the store */
	test_assert((result.fired & TEST_BIT(DUPLICATE)) == 0);
	test_end();
}

static void test_looptest_headers(void)
{
	const unsigned int all = TEST_ALL_CHECKS;

	test_begin("looptest header values");
	/* auto-submitted */
	test_assert(test_fired("Auto-Submitted: no\n\n", NULL, all) == 0);
	test_assert(test_fired("Auto-Submitted:   No  (person)\n\n",
			       NULL, all) == 0);
	test_assert(test_fired("Auto-Submitted: auto-replied\n\n", NULL,
			       all) == TEST_BIT(AUTO_SUBMITTED));
	test_assert(test_fired("aUTO-sUBMITTED: Auto-Generated (failure)\n\n",
			       NULL, all) == TEST_BIT(AUTO_SUBMITTED));
	test_assert(test_fired("Auto-Submitted: (why) auto-replied; x=y\n\n",
			       NULL, all) == TEST_BIT(AUTO_SUBMITTED));
	test_assert(test_fired("Auto-Submitted: no\n"
			       "Auto-Submitted: auto-notified\n\n",
			       NULL, all) == TEST_BIT(AUTO_SUBMITTED));
	test_assert(test_fired("Auto-Submitted:\n auto-replied\n\n", NULL,
			       all) == TEST_BIT(AUTO_SUBMITTED));
	test_assert(test_fired("Auto-Submitted: nothing\n\n", NULL,
			       all) == TEST_BIT(AUTO_SUBMITTED));
	/* precedence */
	test_assert(test_fired("Precedence: BULK\n\n", NULL, all) ==
		    TEST_BIT(PRECEDENCE));
	test_assert(test_fired("X-Precedence:\tlist \n\n", NULL, all) ==
		    TEST_BIT(PRECEDENCE));
	test_assert(test_fired("Precedence:\n junk\n\n", NULL, all) ==
		    TEST_BIT(PRECEDENCE));
	test_assert(test_fired("Precedence: auto_reply\n\n", NULL, all) ==
		    TEST_BIT(PRECEDENCE));
	test_assert(test_fired("Precedence: Auto-Reply\n\n", NULL, all) ==
		    TEST_BIT(PRECEDENCE));
	test_assert(test_fired("Precedence: normal\n\n", NULL, all) == 0);
	test_assert(test_fired("Precedence: first-class\n\n", NULL, all) == 0);
	test_assert(test_fired("Precedence: bulky\n\n", NULL, all) == 0);
	/* suppress */
	test_assert(test_fired("X-Auto-Response-Suppress: All\n\n", NULL,
			       all) == TEST_BIT(SUPPRESS));
	test_assert(test_fired("X-Auto-Response-Suppress: RN, NRN,oof\n\n",
			       NULL, all) == TEST_BIT(SUPPRESS));
	test_assert(test_fired("X-Auto-Response-Suppress: DR\n\n", NULL,
			       all) == TEST_BIT(SUPPRESS));
	test_assert(test_fired("X-Auto-Response-Suppress: AutoReply\n\n",
			       NULL, all) == TEST_BIT(SUPPRESS));
	test_assert(test_fired("X-Auto-Response-Suppress: RN, NRN\n\n", NULL,
			       all) == 0);
	test_assert(test_fired("X-Auto-Response-Suppress: NDR\n\n", NULL,
			       all) == 0);
	test_assert(test_fired("X-Auto-Response-Suppress: Allx, OOFA\n\n",
			       NULL, all) == 0);
	/* list: presence, even empty */
	test_assert(test_fired("list-id:\n\n", NULL, all) == TEST_BIT(LIST));
	test_assert(test_fired("X-ML-Name: foo\n\n", NULL, all) ==
		    TEST_BIT(LIST));
	test_assert(test_fired("List-Idx: foo\nX-List: foo\n\n", NULL,
			       all) == 0);
	/* autoreply */
	test_assert(test_fired("X-Autoreply: yes\n\n", NULL, all) ==
		    TEST_BIT(AUTOREPLY));
	test_assert(test_fired("X-Autoreply: no\n\n", NULL, all) == 0);
	test_assert(test_fired("X-Autorespond: FALSE\n\n", NULL, all) == 0);
	test_assert(test_fired("X-AutoReply-From: bob@example.com\n\n",
			       NULL, all) == TEST_BIT(AUTOREPLY));
	test_assert(test_fired("X-POST-MessageClass: 9; Autoresponder\n\n",
			       NULL, all) == TEST_BIT(AUTOREPLY));
	test_assert(test_fired("X-POST-MessageClass: 1; Normal\n\n",
			       NULL, all) == 0);
	test_assert(test_fired("X-POST-MessageClass: 99\n\n", NULL,
			       all) == 0);
	test_assert(test_fired("X-MS-Exchange-Inbox-Rules-Loop: "
			       "bob@example.com\n\n", NULL, all) ==
		    TEST_BIT(AUTOREPLY));
	/* bounce headers and types */
	test_assert(test_fired("X-Failed-Recipients: x@example.com\n\n",
			       NULL, all) == TEST_BIT(BOUNCE));
	test_assert(test_fired("Content-Type: multipart/report;\n"
			       "\treport-type=\"Delivery-Status\";\n"
			       "\tboundary=b\n\n--b--\n", NULL, all) ==
		    TEST_BIT(BOUNCE));
	test_assert(test_fired("Content-Type: multipart/report; "
			       "report-type=tlsrpt; boundary=b\n\n--b--\n",
			       NULL, all) == 0);
	test_assert(test_fired("Content-Type: multipart/report; "
			       "boundary=b\n\n--b--\n", NULL, all) == 0);
	/* only the first Content-Type counts, as for the MIME parser */
	test_assert(test_fired("Content-Type: text/plain\n"
			       "Content-Type: multipart/report; "
			       "report-type=delivery-status\n\nx\n",
			       NULL, all) == 0);
	test_assert(test_fired("Content-Type: multipart/mixed; boundary=b\n\n"
			       "--b\nContent-Type: text/plain\n\nsorry\n"
			       "--b\nContent-Type: message/delivery-status\n\n"
			       "Action: failed\n--b--\n", NULL, all) ==
		    TEST_BIT(BOUNCE));
	test_assert(test_fired("Content-Type: multipart/report; "
			       "report-type=delivery-status; boundary=b\n\n"
			       "--b\nContent-Type: text/plain\n\nsorry\n"
			       "--b--\n", NULL, TEST_BIT(HOPS)) == 0);
	/* headers of MIME parts are no top-level headers */
	test_assert(test_fired("Content-Type: multipart/mixed; boundary=b\n\n"
			       "--b\nAuto-Submitted: auto-replied\n"
			       "List-Id: <x.example.com>\n\nx\n--b--\n",
			       NULL, all) == 0);
	test_end();
}

static void test_looptest_addresses(void)
{
	const unsigned int all = TEST_ALL_CHECKS;

	test_begin("looptest marker and self");
	test_assert(test_fired("X-Loop: alice@example.org\n\n", NULL, all) ==
		    TEST_BIT(MARKER));
	test_assert(test_fired("X-LOOP: Alice <ALICE@Example.Org>\n\n", NULL,
			       all) == TEST_BIT(MARKER));
	test_assert(test_fired("X-Loop: bob@example.com, (x)\n"
			       " alice.smith@example.org\n\n", NULL, all) ==
		    TEST_BIT(MARKER));
	test_assert(test_fired("X-Loop: bob@example.com\n"
			       "X-Loop: procmail-alice\n"
			       "X-Loop: alice@example.org.evil\n"
			       "X-Loop: malice@example.org\n\n",
			       NULL, all) == 0);
	test_assert(test_fired("X-Sieve-Redirected-From: alice@example.org\n\n",
			       NULL, all) == TEST_BIT(MARKER));
	test_assert(test_fired("Delivered-To: alice@example.org\n\n", NULL,
			       all) == 0);
	test_assert(test_fired("Delivered-To: alice@example.org\n"
			       "Delivered-To: bob@example.com\n"
			       "Delivered-To: alice.smith@example.org\n\n",
			       NULL, all) == 0);
	test_assert(test_fired("Delivered-To: alice@example.org\n"
			       "Delivered-To: bob@example.com\n"
			       "Delivered-To: Alice@example.org\n\n",
			       NULL, all) == TEST_BIT(MARKER));
	/* counted once per header */
	test_assert(test_fired("Delivered-To: alice@example.org, "
			       "alice@example.org\n\n", NULL, all) == 0);
	test_assert(test_fired("X-Loop: alice@example.org\n\n", NULL,
			       LOOPTEST_GROUP_AUTO) == 0);

	test_assert(test_fired("From: alice@example.org\n\n", NULL, all) ==
		    TEST_BIT(SELF));
	test_assert(test_fired("From: bob@example.com, Alice.Smith@example.org"
			       "\n\n", NULL, all) == TEST_BIT(SELF));
	test_assert(test_fired("From: bob@example.com\n"
			       "Reply-To: alice@example.org\n\n",
			       NULL, all) == TEST_BIT(SELF));
	test_assert(test_fired("From: bob@example.com\n\n",
			       "<ALICE@example.org>", all) == TEST_BIT(SELF));
	test_assert(test_fired("From: alice@example.org\n\n", NULL,
			       LOOPTEST_GROUP_LOOP | LOOPTEST_GROUP_AUTO) == 0);
	test_assert(test_fired("To: alice@example.org\n"
			       "Cc: alice.smith@example.org\n\n",
			       NULL, all) == 0);
	test_end();
}

static void test_looptest_system(void)
{
	static const char *const system[] = {
		"MAILER-DAEMON@mx.example.com", "MAILER-DAEMON",
		"<postmaster@example.com>", "PostMaster+abuse@example.com",
		"listserv@lists.example.edu", "Majordomo@example.com",
		"mailer@example.com", "owner-physics-l@lists.example.edu",
		"devel-request@lists.example.net",
		"devel-bounces+alice=example.org@lists.example.net",
		"news-bounce-1234@example.com", "bounces+12-ab@esp.example.net",
		"bounce-md_1.2@esp.example.net", "bounce@example.com",
		"noreply@example.com", "no-reply@example.com",
		"No_Reply@example.com", "noreply-12345@example.com",
		"no-reply+foo@example.com", "alerts-noreply@example.com",
		"do-not-reply@example.com", "DoNotReply@example.com",
		"do_not_reply.shop@example.com", "donotreply@example.com",
		"SRS0=HHH=TT=example.com=noreply@fwd.example.net",
		"SRS1=H=fwd1.example==H=TT=example.com=mailer-daemon@f.example",
		"\"no reply\"@example.com"
	};
	static const char *const people[] = {
		"noreen.postman@example.com", "mailer.john@example.com",
		"john.mailer@example.com", "postmaster.general@example.com",
		"jo-bouncer@example.com", "bouncer@example.com",
		"mano.replyer@example.com", "nor.eply@example.com",
		"ownerjohn@example.com", "owner-@example.com",
		"request@example.com", "-request@example.com",
		"donald@example.com", "do.nothing@example.com",
		"nobody@example.com", "SRS0=HHH=TT=example.com=bob@fwd.example",
		"srs0=broken@example.com",
		"listservant@example.com", "daemon@example.com",
		"alice@example.org",
	};
	/* From counts also when the envelope sender is a list's or an ESP's
	   VERP address, and the display name when the address is missing */
	static const struct {
		const char *from, *sender;
		bool system;
	} from_cases[] = {
		{ "Mail Delivery System <MAILER-DAEMON@mx.example.com>", NULL,
		  TRUE },
		{ "MAILER-DAEMON@mx.example.com",
		  "dev-bounces+alice=example.org@example.net", TRUE },
		{ "SES-EM-B <no-reply@sns.amazonaws.com>",
		  "0100abc-1@amazonses.example", TRUE },
		{ "<Post_Master@example.com>", "x@example.net", TRUE },
		{ "Facebook <notification+zj4o=d3h@facebookmail.com>",
		  "x@example.net", TRUE },
		{ "MAILER-DAEMON <>", "sender@example.com", TRUE },
		{ "Mail Delivery Subsystem <MAILER-DAEMON>",
		  "sender@example.com", TRUE },
		{ "Mail Delivery Subsystem <relay@example.com>",
		  "x@example.net", TRUE },
		{ "<MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@"
		  "example.com>", "x@example.net", TRUE },
		{ "Mail Delivery Team <bob@example.com>", "x@example.net",
		  FALSE },
		{ "\"Postmaster, Bob\" <bob@example.com>", "x@example.net",
		  FALSE },
		{ "<MicrosoftExchange@example.com>", "x@example.net", FALSE },
		{ "<notifications.bob@example.com>", "x@example.net", FALSE },
	};
	unsigned int i;

	test_begin("looptest system");
	for (i = 0; i < N_ELEMENTS(system); i++) {
		test_assert_idx(test_fired("From: bob@example.com\n\n",
					   system[i], TEST_BIT(SYSTEM)) ==
				TEST_BIT(SYSTEM), i);
	}
	for (i = 0; i < N_ELEMENTS(people); i++) {
		test_assert_idx(test_fired("From: Bob <bob@example.com>\n\n",
					   people[i], TEST_BIT(SYSTEM)) == 0,
				i);
		/* From is held to the same rule */
		test_assert_idx(test_fired(t_strdup_printf(
			"From: %s\n\n", people[i]), "bob@example.com",
			TEST_BIT(SYSTEM)) == 0, i);
	}
	for (i = 0; i < N_ELEMENTS(system); i++) {
		test_assert_idx(test_fired(t_strdup_printf(
			"From: %s\n\n", system[i]), "bob@example.com",
			TEST_BIT(SYSTEM)) == TEST_BIT(SYSTEM), i);
	}
	for (i = 0; i < N_ELEMENTS(from_cases); i++) {
		test_assert_idx(test_fired(t_strdup_printf(
			"From: %s\n\n", from_cases[i].from),
			from_cases[i].sender, TEST_BIT(SYSTEM)) ==
			(from_cases[i].system ? TEST_BIT(SYSTEM) : 0U), i);
	}
	test_assert(test_fired("From: <MAILER-DAEMON@mx.example.com>\n\n", "",
			       TEST_BIT(SYSTEM)) == TEST_BIT(SYSTEM));
	test_assert(test_fired("From: Noreply Team <team@example.com>\n\n",
			       NULL, TEST_BIT(SYSTEM)) == 0);
	test_assert(test_fired("From: noreply@example.com\n\n", "",
			       TEST_BIT(SYSTEM) | TEST_BIT(BOUNCE)) ==
		    (TEST_BIT(SYSTEM) | TEST_BIT(BOUNCE)));
	test_assert(test_fired("Subject: none\n\n", "", TEST_ALL_CHECKS) ==
		    TEST_BIT(BOUNCE));
	test_assert(test_fired("Subject: none\n\n", "<>", TEST_ALL_CHECKS) ==
		    TEST_BIT(BOUNCE));
	test_assert(test_fired("Subject: none\n\n", NULL,
			       TEST_ALL_CHECKS) == 0);
	test_end();
}

static void test_looptest_subjects(void)
{
	/* subject, From, extra headers and body, expected */
	static const struct {
		const char *subject, *from, *rest;
		unsigned int fired;
	} cases[] = {
		/* a bounce subject needs a robot or an enclosed message */
		{ "Returned mail: see transcript for details",
		  "MAILER-DAEMON <>", "\n", TEST_BIT(BOUNCE) },
		{ "failure notice", "<MAILER-DAEMON>", "\n", TEST_BIT(BOUNCE) },
		{ "Delivery failure notification",
		  "Symantec_AntiVirus_for_SMTP_Gateways@gw.example.com", "\n",
		  TEST_BIT(BOUNCE) },
		{ "Undeliverable Message", "Mail Delivery System "
		  "<relay@example.com>", "\n", TEST_BIT(BOUNCE) },
		{ "Undeliverable: report", "bob@example.com",
		  "Content-Type: multipart/mixed; boundary=\"b\"\n\n"
		  "--b\nContent-Type: text/plain\n\ntext\n"
		  "--b\nContent-Type: message/rfc822\n\nSubject: report\n\n"
		  "--b--\n", TEST_BIT(BOUNCE) },
		{ "complaint about message from 192.0.2.1", "staff@example.com",
		  "Content-Type: multipart/mixed; boundary=\"b\"\n\n"
		  "--b\nContent-Type: text/rfc822-headers\n\nSubject: x\n\n"
		  "--b--\n", TEST_BIT(BOUNCE) },
		{ "Undeliverable: report", "bob@example.com", "\n", 0 },
		{ "Returned mail: see transcript for details",
		  "Bob <bob@example.com>", "\n", 0 },
		/* an attachment that is not a message is no returned mail */
		{ "Undeliverable: report", "bob@example.com",
		  "Content-Type: multipart/mixed; boundary=\"b\"\n\n"
		  "--b\nContent-Type: application/pdf\n\nxx\n--b--\n", 0 },
		{ "Fwd: Returned mail: see transcript for details",
		  "MAILER-DAEMON <>", "\n", 0 },
		{ "Returned mailbox keys", "Mail Delivery System "
		  "<relay@example.com>", "\n", 0 },
		/* auto-reply tags: at the start, with their colon */
		{ "Automatic reply: Budget", "bob@example.com", "\n",
		  TEST_BIT(AUTOREPLY) },
		{ "AUTO REPLY: Budget", "bob@example.com", "\n",
		  TEST_BIT(AUTOREPLY) },
		{ "Auto-Reply", "bob@example.com", "\n", TEST_BIT(AUTOREPLY) },
		{ "=?UTF-8?Q?Autom=C4=81tiska_atbilde?=", "bob@example.com",
		  "\n", TEST_BIT(AUTOREPLY) },
		{ "=?UTF-8?Q?=D0=90=D0=B2=D1=82=D0=BE=D0=BC=D0=B0=D1=82=D0=B8=D1"
		  "=87=D0=B5=D1=81=D0=BA=D0=B8=D0=B9_=D0=BE=D1=82=D0=B2=D0=B5=D1"
		  "=82:_x?=", "bob@example.com", "\n", TEST_BIT(AUTOREPLY) },
		{ "AUTO: Jane Doe is out of the office (returning 02/08/2024)",
		  "jane@example.com", "\n", TEST_BIT(AUTOREPLY) },
		{ "Re: your mail - please verify you are human",
		  "bob@example.com", "\n", TEST_BIT(AUTOREPLY) },
		{ "Auto reply not working", "bob@example.com", "\n", 0 },
		{ "Automatic replyguy", "bob@example.com", "\n", 0 },
		{ "Re: Automatic reply: Budget", "bob@example.com", "\n", 0 },
		{ "Auto: Out of office next week", "bob@example.com", "\n", 0 },
		{ "Auto: Bob is out of the office", "bob@example.com", "\n", 0 },
		{ "Out of office next week", "bob@example.com", "\n", 0 },
	};
	unsigned int i, checks = TEST_BIT(BOUNCE) | TEST_BIT(AUTOREPLY);

	test_begin("looptest subjects");
	for (i = 0; i < N_ELEMENTS(cases); i++) {
		const char *msg = t_strdup_printf(
			"From: %s\nSubject: %s\nMIME-Version: 1.0\n%s",
			cases[i].from, cases[i].subject, cases[i].rest);

		test_assert_idx(test_fired(msg, "sender@example.com", checks) ==
				cases[i].fired, i);
	}
	test_end();
}

static void test_looptest_hops(void)
{
	struct looptest_envelope envelope = {
		.sender = NULL,
		.user_addresses = NULL,
		.hops_threshold = 3,
	};
	struct looptest_result result;
	struct istream *input;
	const char *msg, *error;

	test_begin("looptest hops");
	msg = "Received: a\nReceived: b\n\tfolded\n"
		"Subject: x\nX-Received: c\n\nReceived: body\n";
	input = i_stream_create_from_data(msg, strlen(msg));
	test_assert(looptest_checks_evaluate(input, &envelope,
					     LOOPTEST_GROUP_LOOP, &result,
					     &error) == 0);
	test_assert(result.received_count == 2);
	test_assert(result.fired == 0);
	i_stream_unref(&input);

	msg = "Received: a\nReceived: b\nReceived: c\n\n";
	input = i_stream_create_from_data(msg, strlen(msg));
	test_assert(looptest_checks_evaluate(input, &envelope,
					     LOOPTEST_GROUP_LOOP, &result,
					     &error) == 0);
	test_assert(result.received_count == 3);
	test_assert(result.fired == TEST_BIT(HOPS));
	i_stream_unref(&input);

	/* a threshold of 0 turns the check off rather than firing always */
	envelope.hops_threshold = 0;
	input = i_stream_create_from_data(msg, strlen(msg));
	test_assert(looptest_checks_evaluate(input, &envelope,
					     LOOPTEST_GROUP_LOOP, &result,
					     &error) == 0);
	test_assert(result.fired == 0);
	i_stream_unref(&input);
	test_end();
}

static void test_looptest_many_received(void)
{
	string_t *msg = t_str_new(1024 * 1024);
	struct looptest_result result;
	unsigned int i;

	test_begin("looptest 10000 Received headers");
	str_append(msg, "From: bob@example.com\n");
	for (i = 0; i < 10000; i++) {
		str_printfa(msg, "Received: from relay%u.example.net by "
			    "relay%u.example.net;\n\tTue, 4 Jun 2024 "
			    "10:11:12 +0200\n", i, i + 1);
	}
	str_append(msg, "Subject: round and round\n\nbody\n");
	test_assert(test_eval_data(str_data(msg), str_len(msg), NULL,
				   TEST_ALL_CHECKS, &result) == 0);
	test_assert(result.received_count == 10000);
	test_assert(result.fired == TEST_BIT(HOPS));
	test_assert(test_eval_data(str_data(msg), str_len(msg), NULL,
				   TEST_BIT(HOPS), &result) == 0);
	test_assert(result.fired == TEST_BIT(HOPS));
	test_end();
}

static void test_looptest_huge_values(void)
{
	const size_t huge = 1024 * 1024;
	string_t *msg = t_str_new(4 * huge);
	struct looptest_result result, result2;
	struct istream *input;
	struct looptest_envelope envelope = {
		.sender = NULL,
		.user_addresses = test_user_addresses,
		.hops_threshold = 30,
	};
	const char *error;
	size_t i;

	test_begin("looptest 1 MB header values");
	/* one unfolded line of junk, one folded list of addresses, a
	   huge Subject: all must be read in full */
	str_append(msg, "X-Junk: ");
	for (i = 0; i < huge; i++)
		str_append_c(msg, 'a' + i % 26);
	str_append(msg, "\nX-Loop: ");
	for (i = 0; str_len(msg) < 2 * huge; i++)
		str_printfa(msg, "robot%zu@example.net,\n ", i);
	str_append(msg, "alice@example.org\nSubject: ");
	for (i = 0; i < huge / 8; i++)
		str_append(msg, "=?UTF-8?Q?=C3=A9?= ");
	str_append(msg, "\nPrecedence: ");
	for (i = 0; i < huge; i++)
		str_append_c(msg, ' ');
	str_append(msg, "bulk\n\nbody\n");

	test_assert(test_eval_data(str_data(msg), str_len(msg), NULL,
				   TEST_ALL_CHECKS, &result) == 0);
	test_assert(result.fired ==
		    (TEST_BIT(MARKER) | TEST_BIT(PRECEDENCE)));

	/* a small stream buffer splits the lines; same answer */
	input = test_istream_create_data(str_data(msg), str_len(msg));
	test_istream_set_max_buffer_size(input, 4096);
	test_assert(looptest_checks_evaluate(input, &envelope,
					     TEST_ALL_CHECKS, &result2,
					     &error) == 0);
	test_assert(result2.fired == result.fired);
	test_assert(memcmp(result.fingerprint, result2.fingerprint,
			   sizeof(result.fingerprint)) == 0);
	i_stream_unref(&input);
	test_end();
}

static void test_looptest_nuls_and_utf8(void)
{
	static const char msg1[] =
		"From: b\0b@example.com\n"
		"X-Lo\0op: alice@example.org\n"
		"X-Loop\0: alice@example.org\n"
		"List-Id\0x: <list.example.com>\n"
		"Subject: caf\xc3\xa9 \xff\xfe\xc3 \0 =?UTF-8?B?//8=?=\n"
		"Precedence: bulk\0junk\n"
		"Auto-Submitted: no\0pe\n"
		"X-Auto-Response-Suppress: RN,\0All\n"
		"\n"
		"body\0with\xff\xc0 nul\n";
	static const char msg2[] =
		"From: b\0b@example.com\n"
		"Subject: caf\xc3\xa9 \xff\xfe\xc3 \0 =?UTF-8?B?//8=?=\n"
		"\n"
		"body\0with\xff\xc0 nul\n";
	static const char msg3[] =
		"From: b\0b@example.com\n"
		"Subject: caf\xc3\xa9 \xff\xfe\xc3 \0 =?UTF-8?B?//8=?=\n"
		"\n"
		"body\0with\xff\xc1 nul\n";
	struct looptest_result result1, result2, result3;

	test_begin("looptest NULs and invalid UTF-8");
	test_assert(test_eval_data(msg1, sizeof(msg1) - 1, NULL,
				   TEST_ALL_CHECKS, &result1) == 0);
	/* "X-Lo\0op" is no X-Loop header; NUL ends a token */
	test_assert(result1.fired == TEST_BIT(PRECEDENCE));
	test_assert(test_eval_data(msg2, sizeof(msg2) - 1, NULL,
				   TEST_ALL_CHECKS, &result2) == 0);
	test_assert(result2.fired == 0);
	test_assert(memcmp(result1.fingerprint, result2.fingerprint,
			   sizeof(result1.fingerprint)) == 0);
	test_assert(test_eval_data(msg3, sizeof(msg3) - 1, NULL,
				   TEST_ALL_CHECKS, &result3) == 0);
	test_assert(memcmp(result2.fingerprint, result3.fingerprint,
			   sizeof(result2.fingerprint)) != 0);
	test_end();
}

static void test_looptest_odd_shapes(void)
{
	const unsigned int all = TEST_ALL_CHECKS;
	unsigned char fp1[LOOPTEST_FINGERPRINT_SIZE];
	unsigned char fp2[LOOPTEST_FINGERPRINT_SIZE];

	test_begin("looptest odd message shapes");
	/* empty, headers only, without the final newline */
	test_assert(test_fired("", NULL, all) == 0);
	test_assert(test_fired("\n", NULL, all) == 0);
	test_assert(test_fired("\n\nAuto-Submitted: auto-replied\n", NULL,
			       all) == 0);
	test_assert(test_fired("Auto-Submitted: auto-replied", NULL, all) ==
		    TEST_BIT(AUTO_SUBMITTED));
	test_assert(test_fired("Subject: x\nX-Loop: alice@example.org", NULL,
			       all) == TEST_BIT(MARKER));
	test_assert(test_fired("Subject: x\nPrecedence: bulk\n", NULL,
			       all) == TEST_BIT(PRECEDENCE));
	test_assert(test_fired("Precedence: bulk\r\n\r\n", NULL, all) ==
		    TEST_BIT(PRECEDENCE));
	/* a line without a colon and a header with a space before it */
	test_assert(test_fired("Garbage line\nList-Id : <x.example.com>\n\n",
			       NULL, all) == TEST_BIT(LIST));
	/* a huge header name is taken as a value, not as a name */
	T_BEGIN {
		string_t *msg = t_str_new(4096);

		str_append(msg, "List-Id");
		while (str_len(msg) < 2000)
			str_append_c(msg, 'x');
		str_append(msg, ": x\nSubject: y\n\n");
		test_assert(test_fired(str_c(msg), NULL, all) == 0);
	} T_END;
	/* unterminated multipart and broken MIME */
	test_assert(test_fired("Content-Type: multipart/mixed; boundary=b\n\n"
			       "--b\nContent-Type: message/delivery-status\n",
			       NULL, all) == TEST_BIT(BOUNCE));
	test_assert(test_fired("Content-Type: multipart/report; "
			       "report-type=delivery-status; boundary=\"\n\n",
			       NULL, all) == TEST_BIT(BOUNCE));
	test_assert(test_fired("Content-Type: ;;;\n\n", NULL, all) == 0);
	/* a header-only message fingerprints like one with an empty body */
	test_fingerprint("Subject: x\n", fp1);
	test_fingerprint("Subject: x\n\n", fp2);
	test_assert(memcmp(fp1, fp2, sizeof(fp1)) == 0);
	test_end();
}

static void test_looptest_deep_mime(void)
{
	string_t *msg = t_str_new(1024 * 64);
	unsigned int i;

	test_begin("looptest deep and wide MIME");
	/* nesting beyond the parser's limit: what lies deeper is text; the
	   point is that it ends, in linear time */
	for (i = 0; i < 200; i++) {
		str_printfa(msg, "Content-Type: multipart/mixed; boundary=b%u"
			    "\n\n--b%u\n", i, i);
	}
	str_append(msg, "Content-Type: message/delivery-status\n\nx\n");
	test_assert((test_fired(str_c(msg), NULL, TEST_ALL_CHECKS) &
		     ENUM_NEGATE(TEST_BIT(BOUNCE))) == 0);

	/* more parts than the parser's limit, likewise */
	str_truncate(msg, 0);
	str_append(msg, "Content-Type: multipart/mixed; boundary=b\n\n");
	for (i = 0; i < 20000; i++)
		str_append(msg, "--b\nContent-Type: text/plain\n\nx\n");
	str_append(msg, "--b\nContent-Type: message/delivery-status\n\n"
		   "x\n--b--\n");
	test_assert((test_fired(str_c(msg), NULL, TEST_ALL_CHECKS) &
		     ENUM_NEGATE(TEST_BIT(BOUNCE))) == 0);
	test_end();
}

/* Returns how far into the message evaluating the checks read. */
static uoff_t test_read_offset(const char *msg, unsigned int checks)
{
	struct looptest_envelope envelope = {
		.sender = "",
		.user_addresses = test_user_addresses,
		.hops_threshold = 30,
	};
	struct looptest_result result;
	struct istream *input;
	const char *error;
	uoff_t offset;

	input = i_stream_create_from_data(msg, strlen(msg));
	test_assert(looptest_checks_evaluate(input, &envelope, checks,
					     &result, &error) == 0);
	offset = input->v_offset;
	i_stream_unref(&input);
	return offset;
}

static void test_looptest_reads_only_needed(void)
{
	static const char *plain =
		"Subject: x\n\nbody that need not be read\n";
	static const char *multi =
		"Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n"
		"--b\n\nbody\n--b--\n";
	const size_t plain_hdr = strlen("Subject: x\n\n");

	test_begin("looptest reads only what it needs");
	test_assert(test_read_offset(plain, LOOPTEST_GROUP_LOOP &
		ENUM_NEGATE(TEST_BIT(DUPLICATE))) == plain_hdr);
	test_assert(test_read_offset(plain, TEST_BIT(BOUNCE)) == plain_hdr);
	test_assert(test_read_offset(plain, TEST_ALL_CHECKS) == strlen(plain));
	test_assert(test_read_offset(multi, TEST_BIT(LIST)) < strlen(multi));
	/* the null sender already decided bounce */
	test_assert(test_read_offset(multi, TEST_BIT(BOUNCE)) < strlen(multi));
	test_assert(test_read_offset(multi, TEST_BIT(DUPLICATE)) ==
		    strlen(multi));
	test_end();
}

static void test_looptest_stream_error(void)
{
	struct looptest_envelope envelope = {
		.sender = NULL,
		.user_addresses = NULL,
		.hops_threshold = 30,
	};
	struct looptest_result result;
	struct istream *input;
	const char *error = NULL;

	test_begin("looptest stream error");
	input = i_stream_create_error_str(EIO, "disk on fire");
	test_assert(looptest_checks_evaluate(input, &envelope,
					     TEST_ALL_CHECKS, &result,
					     &error) == -1);
	test_assert(error != NULL && strstr(error, "disk on fire") != NULL);
	i_stream_unref(&input);
	test_end();
}

/*
 * The fixture corpus
 */

static bool
test_parse_expected(const char *const *names, unsigned int *checks_r)
{
	unsigned int checks;

	*checks_r = 0;
	if (names[0] != NULL && strcmp(names[0], "none") == 0)
		return names[1] == NULL;
	for (; *names != NULL; names++) {
		if (!looptest_checks_parse_name(*names, &checks) ||
		    (checks & (checks - 1)) != 0)
			return FALSE;
		*checks_r |= checks;
	}
	return *checks_r != 0;
}

static const char *test_reasons(unsigned int checks)
{
	return checks == 0 ? "none" : looptest_checks_reasons(checks);
}

static void
test_fixture_eval(struct istream *input,
		  const struct looptest_envelope *envelope,
		  unsigned int checks, struct looptest_result *result_r)
{
	const char *error;

	i_stream_seek(input, 0);
	if (looptest_checks_evaluate(input, envelope, checks, result_r,
				     &error) < 0) {
		i_error("%s", error);
		test_assert(FALSE);
	}
}

static void
test_fixture(const char *file, const struct looptest_envelope *envelope,
	     unsigned int expected, unsigned int line)
{
	struct looptest_result result, result2;
	struct istream *input;
	unsigned int i, only;
	const char *path;

	path = t_strconcat(fixture_dir, "/", file, NULL);
	/* a small buffer, so long lines arrive in pieces */
	input = i_stream_create_file(path, 512);
	test_fixture_eval(input, envelope, TEST_ALL_CHECKS, &result);
	if (input->stream_errno != 0) {
		i_error("%s: %s", path, i_stream_get_error(input));
		test_assert(FALSE);
		i_stream_unref(&input);
		return;
	}
	test_assert_strcmp_idx(
		t_strdup_printf("%s: %s", file, test_reasons(result.fired)),
		t_strdup_printf("%s: %s", file, test_reasons(expected)), line);

	/* selecting fewer checks changes only what is reported */
	for (i = 0; i < LOOPTEST_CHECK_COUNT; i++) {
		only = LOOPTEST_CHECK_BIT(i);
		test_fixture_eval(input, envelope, only, &result2);
		test_assert_idx(result2.fired == (expected & only), line);
	}
	test_fixture_eval(input, envelope, LOOPTEST_GROUP_AUTO, &result2);
	test_assert_idx(result2.fired == (expected & LOOPTEST_GROUP_AUTO),
			line);
	test_fixture_eval(input, envelope, LOOPTEST_GROUP_LOOP, &result2);
	test_assert_idx(result2.fired == (expected & LOOPTEST_GROUP_LOOP),
			line);
	test_assert_idx(memcmp(result.fingerprint, result2.fingerprint,
			       sizeof(result.fingerprint)) == 0, line);
	i_stream_unref(&input);

	/* and neither does the size of the stream's buffer */
	input = i_stream_create_file(path, SIZE_MAX);
	test_fixture_eval(input, envelope, LOOPTEST_CHECK_BIT(
		LOOPTEST_CHECK_DUPLICATE), &result2);
	test_assert_idx(memcmp(result.fingerprint, result2.fingerprint,
			       sizeof(result.fingerprint)) == 0, line);
	i_stream_unref(&input);
}

static void test_looptest_fixtures(void)
{
	struct looptest_envelope envelope;
	struct istream *input;
	const char *path, *line, *const *args;
	unsigned int line_no = 0, count = 0, expected;

	test_begin("looptest fixtures");
	path = t_strconcat(fixture_dir, "/EXPECTED", NULL);
	input = i_stream_create_file(path, SIZE_MAX);
	while ((line = i_stream_read_next_line(input)) != NULL) {
		line_no++;
		if (line[0] == '#' || line[0] == '\0')
			continue;
		T_BEGIN {
			args = t_strsplit_spaces(line, " \t");
			if (str_array_length(args) < 4 ||
			    !test_parse_expected(args + 3, &expected)) {
				i_error("%s:%u: invalid line", path, line_no);
				test_assert(FALSE);
			} else {
				i_zero(&envelope);
				envelope.hops_threshold = 30;
				envelope.sender = strcmp(args[1], "-") == 0 ?
					NULL : strcmp(args[1], "<>") == 0 ?
					"" : args[1];
				envelope.user_addresses =
					strcmp(args[2], "-") == 0 ? NULL :
					(const char *const *)
					t_strsplit(args[2], ",");
				test_fixture(args[0], &envelope, expected,
					     line_no);
				count++;
			}
		} T_END;
	}
	if (input->stream_errno != 0) {
		i_error("%s: %s", path, i_stream_get_error(input));
		test_assert(FALSE);
	}
	/* a missing or truncated manifest must not pass silently */
	test_assert(count >= 40);
	i_stream_unref(&input);
	test_end();
}

int main(int argc, char *argv[])
{
	static void (*const test_functions[])(void) = {
		test_looptest_names,
		test_looptest_reasons,
		test_looptest_fingerprint,
		test_looptest_headers,
		test_looptest_addresses,
		test_looptest_system,
		test_looptest_subjects,
		test_looptest_hops,
		test_looptest_many_received,
		test_looptest_huge_values,
		test_looptest_nuls_and_utf8,
		test_looptest_odd_shapes,
		test_looptest_deep_mime,
		test_looptest_reads_only_needed,
		test_looptest_stream_error,
		test_looptest_fixtures,
		NULL
	};

	if (argc > 1)
		fixture_dir = argv[1];
	return test_run(test_functions);
}
