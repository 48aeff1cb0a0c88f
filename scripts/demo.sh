#!/bin/sh
# Installs what is missing, builds, and runs the demo: a real Dovecot
# delivering an auto-reply storm and a flood, and loopguard stopping them.
set -e
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
exec ./tests/e2e/demo.sh "$(pwd)"
