#!/bin/sh
# Renders doc/grafana/sieve-loopguard-dashboard.png: the panels of the
# Grafana dashboard beside it, drawn with matplotlib from the OpenMetrics
# page of a real Dovecot scraped during the e2e scenario "openmetrics"
# (Debian packages no Grafana). Run as root, like the tests.
set -e
cd "$(dirname "$0")/.."
./scripts/install-deps.sh python3-matplotlib
./scripts/build.sh

scrapes=$(mktemp /tmp/loopguard-scrapes.XXXXXX)
trap 'rm -f "$scrapes"' EXIT
LG_OPENMETRICS_OUT=$scrapes ./tests/e2e/run.sh . openmetrics
/usr/bin/python3 scripts/render-dashboard.py \
	doc/grafana/sieve-loopguard-dashboard.json "$scrapes" \
	doc/grafana/sieve-loopguard-dashboard.png
echo "Wrote doc/grafana/sieve-loopguard-dashboard.png"
