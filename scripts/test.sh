#!/bin/sh
# Installs what is missing, builds, and runs every test: unit tests (also
# under valgrind), sieve-test scenarios and the real-Dovecot suite.
set -e
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
exec ./tests/run-tests.sh --valgrind
