# e2e two-backends scenario: at most 50 messages per sender and hour.
require ["vnd.loopguard.ratelimit"];

if ratelimit :count 50 :seconds 3600 {
    discard;
    stop;
}
