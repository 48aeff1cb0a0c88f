#!/usr/bin/python3
"""Draws the panels of doc/grafana/sieve-loopguard-dashboard.json as a PNG,
from OpenMetrics scrapes of Dovecot's stats listener (the JSON the e2e
scenario "openmetrics" writes with LG_OPENMETRICS_OUT), for where no Grafana
is at hand: Debian packages none.  Panel titles, positions and queries come
from the dashboard itself; the queries it uses are of three forms only,
which are evaluated here over the scrapes:

    sum(increase(METRIC[$__range]))                    stat: the whole run
    sum(increase(METRIC[$__rate_interval]))            per scrape interval
    sum by (LABEL) (increase(METRIC[$__rate_interval]))

Usage: render-dashboard.py DASHBOARD.json SCRAPES.json OUT.png
"""

import json
import re
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EXPR_RE = re.compile(r"^sum(?: by \((\w+)\))?\s*\(increase\((\w+)\["
                     r"\$__(range|rate_interval)\]\)\)$")


def evaluate(expr, legend, scrapes):
    """-> (kind, {legend: [value per interval]} or {legend: total})"""
    m = EXPR_RE.match(expr)
    if m is None:
        sys.exit("render-dashboard: unsupported query %r" % expr)
    by, metric, window = m.groups()
    # one value per scrape for each group
    groups = {}
    for i, scrape in enumerate(scrapes):
        for s in scrape["series"]:
            if s["name"] != metric:
                continue
            name = legend
            if by is not None:
                value = s["labels"].get(by, "")
                name = legend.replace("{{%s}}" % by, value or '"" (no :handle)')
            col = groups.setdefault(name, [0.0] * len(scrapes))
            col[i] += s["value"]
    if window == "range":
        return "total", {n: v[-1] - v[0] for n, v in groups.items()}
    return "steps", {n: [b - a for a, b in zip(v, v[1:])]
                     for n, v in sorted(groups.items())}


def draw_stat(ax, panel, scrapes):
    ax.axis("off")
    rows = []
    for t in panel["targets"]:
        _, totals = evaluate(t["expr"], t["legendFormat"], scrapes)
        rows += sorted(totals.items())
    for i, (name, total) in enumerate(rows):
        y = 0.72 - i * 0.42
        ax.text(0.05, y + 0.16, name, fontsize=11, color="#555555",
                transform=ax.transAxes)
        ax.text(0.05, y - 0.08, "%d" % total, fontsize=30, weight="bold",
                color="#1f60c4", transform=ax.transAxes)


def draw_timeseries(ax, panel, scrapes):
    times = [s["t"] for s in scrapes]
    widths = [b - a for a, b in zip(times, times[1:])]
    mids = [a + w / 2 for a, w in zip(times, widths)]
    stack = (panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"]
             == "normal")
    bottom = [0.0] * len(mids)
    series = {}
    for t in panel["targets"]:
        _, steps = evaluate(t["expr"], t["legendFormat"], scrapes)
        series.update(steps)
    n = max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        if stack:
            x, w, base = mids, [0.8 * d for d in widths], bottom
        else:
            x = [m - 0.4 * d + (k + 0.5) * 0.8 * d / n
                 for m, d in zip(mids, widths)]
            w, base = [0.8 * d / n for d in widths], None
        ax.bar(x, values, width=w, bottom=base,
               label="%s (sum %d)" % (name, sum(values)))
        if stack:
            bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xlabel("seconds into the e2e storm (one bar per scrape)")
    ax.set_ylabel("firings")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        dash = json.load(f)
    with open(sys.argv[2]) as f:
        scrapes = json.load(f)
    if len(scrapes) < 2:
        sys.exit("render-dashboard: need at least two scrapes")

    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dash["panels"])
    fig = plt.figure(figsize=(16, rows * 0.7), layout="constrained")
    grid = fig.add_gridspec(rows, 24)
    for p in dash["panels"]:
        g = p["gridPos"]
        ax = fig.add_subplot(grid[g["y"]:g["y"] + g["h"],
                                  g["x"]:g["x"] + g["w"]])
        ax.set_title(p["title"], loc="left", fontsize=12, weight="bold")
        if p["type"] == "stat":
            draw_stat(ax, p, scrapes)
        else:
            draw_timeseries(ax, p, scrapes)
    fig.suptitle("%s -- rendered from Dovecot's OpenMetrics page, "
                 "scraped during tests/e2e \"openmetrics\"" % dash["title"],
                 fontsize=13)
    fig.savefig(sys.argv[3], dpi=80, bbox_inches="tight")


if __name__ == "__main__":
    main()
