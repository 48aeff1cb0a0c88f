#ifndef LOOPTEST_PHRASES_H
#define LOOPTEST_PHRASES_H

/* The words and phrases by which robots that send no marker header are
   still known: the subjects of bounces and auto-replies, and the names that
   delivery systems give themselves. All take NUL-terminated UTF-8 (a decoded
   Subject or display name) and compare ASCII letters case-insensitively.

   A subject phrase counts only at the very start of the subject, so a
   person's reply or forward ("Re: Automatic reply: ...", "Fwd: Returned
   mail ...") is never mistaken for the robot's own message. */

/* The subject starts like the report of a delivery failure or delay, or of
   a spam complaint. Alone this is weak evidence: a person may write
   "Undeliverable package" too, so the caller combines it with a robot-like
   sender or an enclosed message. */
bool looptest_subject_is_bounce(const char *subject);

/* The subject starts with the tag that an auto-responder puts before the
   original subject ("Automatic reply:", "Réponse automatique :"), is a
   Lotus Notes absence notice ("AUTO: Name is out of the office ..."), or
   names the challenge of a challenge-response system. Strong enough
   alone. */
bool looptest_subject_is_autoreply(const char *subject);

/* The display name is one that MTAs use for their own reports ("Mail
   Delivery Subsystem", "MAILER-DAEMON"), matched whole. */
bool looptest_name_is_system(const char *name);

/* A word of the text (a local part or a display name, split at anything
   but letters and digits) is one that gateways and delivery systems use
   for themselves: "E500_SMTP_Mail_Service", "Symantec_AntiVirus_for_SMTP_
   Gateways", "Mail Delivery System". Only ever used together with a bounce
   subject. */
bool looptest_text_has_robot_word(const char *text);

#endif
