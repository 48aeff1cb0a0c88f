/* Subject phrases and sender names by which looptest knows robots. */

#include "lib.h"
#include "loopguard-compat.h"
#include "looptest-phrases.h"

/* The report subjects of MTAs, gateways and mail services, as they begin:
   Postfix, Exim, Sendmail, qmail and Yahoo, Exchange and Outlook.com
   (in their localized forms too), Gmail, Lotus Notes/Domino, GroupWise,
   antivirus gateways and MMS gateways. Hotmail's JMRP complaints belong
   here as well: they too report on a message the user sent. */
static const char *const looptest_bounce_subjects[] = {
	"undelivered mail",
	"undeliverable",
	"mail delivery failed",
	"mail delivery failure",
	"message delivery failure",
	"delivery failure",
	"permanent delivery failure",
	"delivery has failed",
	"delivery status notification",
	"delivery notification",
	"delivery delayed",
	"delayed mail",
	"returned mail",
	"failure notice",
	"message not delivered",
	"mail could not be delivered",
	"message could not be delivered",
	"mail system error",
	"nondeliverable mail",
	"non-deliverable",
	"warning: could not send message",
	"unzustellbar",
	"non remis",
	"no se puede entregar",
	"onbestelbaar",
	"non recapitabile",
	"olevererbart",
	"kan ikke leveres",
	"nie można dostarczyć",
	"nedoručitelné",
	"Не доставлено",
	"не доставлено",
	"complaint about message from",
};

/* The tags auto-responders put before the original subject. Outlook's
   localized forms are written as Outlook writes them; letters outside
   ASCII are listed in both cases where a language capitalizes them. */
static const char *const looptest_autoreply_tags[] = {
	"auto reply", "auto-reply", "autoreply",
	"auto response", "auto-response", "autoresponse",
	"automatic reply", "automatic response",
	"automated reply", "automated response",
	"out of office autoreply", "out of office reply",
	"abwesenheitsnotiz", "automatische antwort",
	"réponse automatique", "respuesta automática",
	"automatisch antwoord", "risposta automatica",
	"resposta automática", "automatiskt svar", "automatisk svar",
	"automaattinen vastaus", "automatická odpověď",
	"automatická odpoveď", "automatyczna odpowiedź",
	"automatikus válasz", "otomatik yanıt", "automātiska atbilde",
	"automatinis atsakymas", "automaatne vastus",
	"automatski odgovor", "samodejni odgovor", "răspuns automat",
	"Автоматический ответ", "автоматический ответ",
	"Автоматична відповідь", "автоматична відповідь",
	"Автоматичен отговор", "автоматичен отговор",
	"Αυτόματη απάντηση", "αυτόματη απάντηση",
	"自动回复", "自動回覆", "自動応答", "자동 회신",
};

/* What Lotus Notes writes after "AUTO: <name>" in its absence notices
   ("AUTO: Jane Doe is out of the office (returning 02/08/2024)"), in the
   languages it ships. The verb keeps a person's "Auto: Out of office next
   week" out. */
static const char *const looptest_notes_absence[] = {
	" is out of the office", " is out of office", " ist außer haus",
	" ist nicht im büro", " est absent", " está fuera de la oficina",
	" è fuori ufficio", " is afwezig",
};

/* Challenge-response systems ask the sender to prove to be a person. */
static const char *const looptest_challenge_phrases[] = {
	"verify you are human", "verify that you are human",
	"verify you are a human", "verify that you are a human",
	"confirm you are human", "confirm that you are human",
	"prove you are human", "please confirm your message",
};

static const char *const looptest_system_names[] = {
	"mailer-daemon", "mail delivery subsystem", "mail delivery system",
	"mail delivery service", "postmaster", "mail administrator",
};

static const char *const looptest_robot_words[] = {
	"mailer", "daemon", "postmaster", "smtp", "mta", "gateway",
	"gateways", "antivirus", "virus", "scanner", "mailscanner", "mms",
	"mmsc", "delivery", "system", "subsystem", "administrator", "admin",
	"mailservice", "service", "notification", "notifications", "bounce",
	"bounces",
};

static bool looptest_ascii_letter(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool looptest_ascii_alnum(unsigned char c)
{
	return looptest_ascii_letter(c) || (c >= '0' && c <= '9');
}

static unsigned char looptest_ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Returns what follows the phrase at the start of text, or NULL. Every
   subject meets all the phrases: the first byte turns most of them away
   without a call. */
static const char *
looptest_skip_phrase(const char *text, const char *phrase)
{
	size_t len;

	if (looptest_ascii_lower(*text) != looptest_ascii_lower(*phrase))
		return NULL;
	len = strlen(phrase);
	return strncasecmp(text, phrase, len) == 0 ? text + len : NULL;
}

/* Returns what follows the first of the phrases at the start of text. */
static const char *
looptest_skip_any_phrase(const char *text, const char *const *phrases,
			 unsigned int count)
{
	const char *rest;
	unsigned int i;

	for (i = 0; i < count; i++) {
		rest = looptest_skip_phrase(text, phrases[i]);
		if (rest != NULL)
			return rest;
	}
	return NULL;
}

/* The phrases are in lower case; text is lower-cased once for them all. */
static bool
looptest_contains_any(const char *text, const char *const *phrases,
		      unsigned int count)
{
	unsigned int i;

	text = t_str_lcase(text);
	for (i = 0; i < count; i++) {
		if (strstr(text, phrases[i]) != NULL)
			return TRUE;
	}
	return FALSE;
}

/* A tag ends the subject or is followed by its colon: ASCII or full-width,
   after spaces or a no-break space ("Réponse automatique : ..."). Without
   the colon "Auto reply not working" would be a tag. */
static bool looptest_tag_ends(const char *p)
{
	for (;;) {
		if (*p == ' ')
			p++;
		else if ((unsigned char)p[0] == 0xc2 &&
			 (unsigned char)p[1] == 0xa0)
			p += 2;
		else
			break;
	}
	return *p == '\0' || *p == ':' || str_begins_with(p, "\xef\xbc\x9a");
}

bool looptest_subject_is_bounce(const char *subject)
{
	const char *rest;

	rest = looptest_skip_any_phrase(subject, looptest_bounce_subjects,
					N_ELEMENTS(looptest_bounce_subjects));
	/* a whole word: "Returned mailbox" is something else */
	return rest != NULL && !looptest_ascii_letter(*rest);
}

bool looptest_subject_is_autoreply(const char *subject)
{
	const char *rest;
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(looptest_autoreply_tags); i++) {
		rest = looptest_skip_phrase(subject,
					    looptest_autoreply_tags[i]);
		if (rest != NULL && looptest_tag_ends(rest))
			return TRUE;
	}
	/* "Auto:" alone could be a person's subject about a car (German,
	   Dutch, Italian "auto"); Notes writes it in capitals and follows it
	   with a sentence no person starts a subject with. */
	if (str_begins_with(subject, "AUTO:") &&
	    looptest_contains_any(subject + 5, looptest_notes_absence,
				  N_ELEMENTS(looptest_notes_absence)))
		return TRUE;
	return looptest_contains_any(subject, looptest_challenge_phrases,
				     N_ELEMENTS(looptest_challenge_phrases));
}

bool looptest_name_is_system(const char *name)
{
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(looptest_system_names); i++) {
		if (strcasecmp(name, looptest_system_names[i]) == 0)
			return TRUE;
	}
	return FALSE;
}

bool looptest_text_has_robot_word(const char *text)
{
	const char *word;
	size_t len;
	unsigned int i;

	while (*text != '\0') {
		if (!looptest_ascii_alnum(*text)) {
			text++;
			continue;
		}
		word = text;
		while (looptest_ascii_alnum(*text))
			text++;
		len = text - word;
		for (i = 0; i < N_ELEMENTS(looptest_robot_words); i++) {
			if (strlen(looptest_robot_words[i]) == len &&
			    strncasecmp(word, looptest_robot_words[i],
					len) == 0)
				return TRUE;
		}
	}
	return FALSE;
}
