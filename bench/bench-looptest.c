/* Benchmark: the cost of one looptest evaluation (all checks) on a typical
   message and on a message with 10,000 Received headers. */

#include "lib.h"
#include "istream.h"
#include "str.h"
#include "time-util.h"

#include "looptest-checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *const bench_user_addresses[] = {
	"user@example.com", NULL
};

static string_t *bench_typical_message(void)
{
	string_t *msg = str_new(default_pool, 8192);
	unsigned int i;

	for (i = 0; i < 6; i++) {
		str_printfa(msg, "Received: from mx%u.example.net "
			    "(mx%u.example.net [192.0.2.%u])\r\n\tby "
			    "mx.example.com with ESMTPS id %x\r\n\t"
			    "for <user@example.com>; Mon, 23 Nov 2026 "
			    "10:00:0%u +0000\r\n", i, i, i, i * 7919, i);
	}
	str_append(msg,
		"From: Alice Example <alice@example.org>\r\n"
		"To: User <user@example.com>\r\n"
		"Cc: Bob <bob@example.org>, Carol <carol@example.org>\r\n"
		"Subject: Re: quarterly numbers\r\n"
		"Date: Mon, 23 Nov 2026 09:58:00 +0000\r\n"
		"Message-ID: <20261123095800.12345@example.org>\r\n"
		"In-Reply-To: <20261122.777@example.com>\r\n"
		"References: <20261122.777@example.com>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"\r\n");
	for (i = 0; i < 60; i++)
		str_append(msg, "Thanks, the numbers look fine to me. "
			   "Let us talk on Monday.\r\n");
	return msg;
}

static string_t *bench_hops_message(unsigned int hops)
{
	string_t *msg = str_new(default_pool, hops * 100 + 1024);
	unsigned int i;

	for (i = 0; i < hops; i++) {
		str_printfa(msg, "Received: from hop%u.example.net by "
			    "hop%u.example.net; Mon, 23 Nov 2026 10:00:00 "
			    "+0000\r\n", i, i + 1);
	}
	str_append(msg, "From: robot@example.net\r\nSubject: loop\r\n\r\n"
		   "body\r\n");
	return msg;
}

/* Returns microseconds per evaluation. */
static double bench_run(const string_t *msg, unsigned int iterations)
{
	struct looptest_envelope envelope;
	struct looptest_result result;
	struct timeval start, end;
	const char *error;
	unsigned int i;

	i_zero(&envelope);
	envelope.sender = "alice@example.org";
	envelope.user_addresses = bench_user_addresses;
	envelope.hops_threshold = 30;

	i_gettimeofday(&start);
	for (i = 0; i < iterations; i++) T_BEGIN {
		struct istream *input =
			i_stream_create_from_data(str_data(msg),
						  str_len(msg));
		if (looptest_checks_evaluate(input, &envelope,
				LOOPTEST_GROUP_LOOP | LOOPTEST_GROUP_AUTO |
				LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_SELF),
				&result, &error) < 0)
			i_fatal("evaluate: %s", error);
		i_stream_unref(&input);
	} T_END;
	i_gettimeofday(&end);
	long long usecs = timeval_diff_usecs(&end, &start);

	return (double)usecs / iterations;
}

int main(int argc, char *argv[])
{
	unsigned int iterations = argc > 1 ? atoi(argv[1]) : 20000;
	string_t *typical, *hops;
	double typical_us, hops_us;

	lib_init();
	typical = bench_typical_message();
	hops = bench_hops_message(10000);
	typical_us = bench_run(typical, iterations);
	hops_us = bench_run(hops, I_MAX(iterations / 200, 10U));
	printf("looptest evaluation, all checks, no store access\n");
	printf("typical message (%zu bytes):          %10.2f us\n",
	       str_len(typical), typical_us);
	printf("10,000 Received headers (%zu bytes): %10.2f us\n",
	       str_len(hops), hops_us);
	printf("per Received header: %.3f us\n", hops_us / 10000);
	str_free(&typical);
	str_free(&hops);
	lib_deinit();
	return 0;
}
