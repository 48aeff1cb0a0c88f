# The key and the handle are the decoded Subject: a sender controls them.
require ["vnd.loopguard.ratelimit", "variables"];
if header :matches "Subject" "*" { set "s" "${1}"; }
if ratelimit :key "${s}" :handle "${s}" :count 1 :seconds 300 {
	discard; stop;
}
