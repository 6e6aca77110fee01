"""Compare: the experiments of this commit as one readable table, headline metrics only.

Not a DVC stage: `make compare` runs it. `dvc exp show --only-changed` prints every metric DVC
knows (hundreds of columns on this pipeline: losses, timings, every class share); this prints,
from `dvc exp show --json`, one row per experiment (the commit's own row first): its name (what
`dvc exp apply` takes), its state, the params that differ between the rows, and for each model
(and the real floor) the headline metrics (aigc/review.py: FID, precision, recall, coverage,
copy rate, classes, class KL) that differ between the rows. Everything else stays in
`dvc exp show`. A failed run shows its reason from the queue log.

    python -m stages.compare                  # the table
    python -m stages.compare --metrics fid recall --csv
"""

from __future__ import annotations

import argparse
import csv
import re
import sys

from aigc.errors import exit_on_error
from aigc.experiments import ExperimentError, collect, dvc_exp_show_json, explain_failures
from aigc.review import HEADLINES

HEADLINE_FILE = re.compile(r"^metrics/(?P<model>[^/]+)\.json:(?P<key>.+)$")


def changed(rows, key: str, kind: str) -> bool:
    """Whether `key` takes more than one value among the rows that have it."""
    values = {repr(value) for row in rows if (value := getattr(row, kind).get(key)) is not None}
    return len(values) > 1


def table(rows, metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and cells: name, state, the params and headline metrics that differ."""
    params = sorted({key for row in rows for key in row.params if changed(rows, key, "params")})
    found = []
    for row in rows:
        for key in row.metrics:
            match = HEADLINE_FILE.match(key)
            if match and match["key"] in metrics and key not in found:
                found.append(key)
    shown = [key for key in found if changed(rows, key, "metrics")]
    shown.sort(key=lambda key: (key.split(":")[0], metrics.index(key.split(":")[1])))
    header = ["experiment", "state", *params]
    header += [f"{HEADLINE_FILE.match(key)['model']} {key.split(':')[1]}" for key in shown]
    body = []
    for row in rows:
        cells = [row.name, row.error or "success"]
        cells += [_text(row.params.get(key)) for key in params]
        cells += [_text(row.metrics.get(key)) for key in shown]
        body.append(cells)
    return header, body


def _text(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def aligned(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
             for line in [header, *body]]  # fmt: skip
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [headline.key for headline in HEADLINES]
    parser.add_argument("--metrics", nargs="+", default=names, choices=names,
                        help="headline metrics to show")  # fmt: skip
    parser.add_argument("--csv", action="store_true", help="CSV instead of aligned text")
    args = parser.parse_args(argv)
    with exit_on_error(ExperimentError):
        rows = explain_failures(collect(dvc_exp_show_json(), None, None, baselines=True))
    header, body = table(rows, args.metrics)
    if args.csv:
        csv.writer(sys.stdout).writerows([header, *body])
    else:
        print(aligned(header, body))


if __name__ == "__main__":
    main()
