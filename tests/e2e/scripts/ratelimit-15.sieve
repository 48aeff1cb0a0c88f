# e2e restart scenario: at most 15 messages per sender and hour.
require ["vnd.loopguard.ratelimit"];

if ratelimit :count 15 :seconds 3600 {
    discard;
    stop;
}
