# e2e concurrency scenario: at most 100 messages per sender and hour.
require ["vnd.loopguard.ratelimit"];

if ratelimit :count 100 :seconds 3600 {
    discard;
    stop;
}
