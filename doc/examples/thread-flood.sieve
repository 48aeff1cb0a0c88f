# thread-flood.sieve -- mute a sender who keeps posting to one thread
#
# Notification systems (ticket trackers, CI, monitoring) tend to send an
# update for every change of the same item, and reply-all storms produce
# dozens of messages in one thread.  This keeps the first 2 messages of each
# thread from each sender in the inbox within 2 hours; any further message of
# that sender in that thread goes to the folder "Muted" instead -- nothing is
# thrown away.
#
# ratelimit :thread counts per envelope sender AND thread: the thread is the
# first message-id in References, else In-Reply-To, else the message's own
# Message-ID, else the Subject without Re:/Fwd:/AW:/... prefixes.  A new
# thread, or another sender in the same thread, starts its own count.

require ["fileinto", "mailbox", "vnd.loopguard.ratelimit"];

if ratelimit :thread :count 2 :seconds 7200 {
    fileinto :create "Muted";
    stop;
}
