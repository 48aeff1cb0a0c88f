#ifndef LOOPTEST_CHECKS_H
#define LOOPTEST_CHECKS_H

/* The checks of looptest, on a message read from a stream: neither LMDB nor
   the Sieve interpreter is needed here, so unit tests reach them directly. */

struct istream;

/* In the order in which :reasons lists them. */
enum looptest_check {
	LOOPTEST_CHECK_HOPS = 0,
	LOOPTEST_CHECK_MARKER,
	LOOPTEST_CHECK_DUPLICATE,
	LOOPTEST_CHECK_AUTO_SUBMITTED,
	LOOPTEST_CHECK_PRECEDENCE,
	LOOPTEST_CHECK_SUPPRESS,
	LOOPTEST_CHECK_LIST,
	LOOPTEST_CHECK_BOUNCE,
	LOOPTEST_CHECK_SYSTEM,
	LOOPTEST_CHECK_AUTOREPLY,
	LOOPTEST_CHECK_SELF,

	LOOPTEST_CHECK_COUNT
};

#define LOOPTEST_CHECK_BIT(check) (1U << (check))

#define LOOPTEST_GROUP_LOOP \
	(LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_HOPS) | \
	 LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_MARKER) | \
	 LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_DUPLICATE))
#define LOOPTEST_GROUP_AUTO \
	(LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_AUTO_SUBMITTED) | \
	 LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_PRECEDENCE) | \
	 LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_SUPPRESS) | \
	 LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_LIST) | \
	 LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_BOUNCE) | \
	 LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_SYSTEM) | \
	 LOOPTEST_CHECK_BIT(LOOPTEST_CHECK_AUTOREPLY))
/* Without :checks only circulating mail is caught. */
#define LOOPTEST_CHECKS_DEFAULT LOOPTEST_GROUP_LOOP

/* SHA-256 of From address, Subject, Date and body. */
#define LOOPTEST_FINGERPRINT_SIZE 32

struct looptest_envelope {
	/* NULL when unknown; "" for the null sender <> */
	const char *sender;
	/* The user's addresses, lower-cased; NULL-terminated. */
	const char *const *user_addresses;
	/* hops fires at this many Received headers or more */
	unsigned int hops_threshold;
};

struct looptest_result {
	/* LOOPTEST_CHECK_BIT()s of the checks that fired; the duplicate
	   check is never set here, it needs the store */
	unsigned int fired;
	unsigned int received_count;
	/* valid when the duplicate check was asked for */
	unsigned char fingerprint[LOOPTEST_FINGERPRINT_SIZE];
};

/* Returns the name of one check. */
const char *looptest_check_name(enum looptest_check check);
/* Parses a check or group name ("loop", "auto") into check bits. Returns
   FALSE for an unknown name. Case-insensitive. */
bool looptest_checks_parse_name(const char *name, unsigned int *checks_r);
/* All valid check and group names, comma-separated, for error messages. */
const char *looptest_checks_valid_names(void);
/* The names of the checks in the bits, space-separated, in check order. */
const char *looptest_checks_reasons(unsigned int checks);

/* Reads the whole message from input once and evaluates the selected
   checks. The body is read only when the duplicate or bounce check needs it.
   Returns 0, or -1 with error_r set when the stream fails. */
int looptest_checks_evaluate(struct istream *input,
			     const struct looptest_envelope *envelope,
			     unsigned int checks,
			     struct looptest_result *result_r,
			     const char **error_r);

#endif
