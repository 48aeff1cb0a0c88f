#!/bin/sh
# Demonstration of sieve-loopguard against a real Dovecot on 127.0.0.1:
# runs the ping-pong and flood scenarios of the e2e suite and tells in plain
# words what happened -- messages in, delivered, discarded, replies sent and
# suppressed, and who is blocked until when (from the Dovecot log and
# doveadm loopguard list).
#
#   tests/e2e/demo.sh [BUILDDIR]
#
# Same requirements as run.sh (root, dovecot, python3, a built plugin).
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -gt 0 ]; then
	exec "$here/run.sh" "$1" --demo pingpong flood
fi
exec "$here/run.sh" --demo pingpong flood
