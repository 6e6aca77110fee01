"""Clean: decode, validate, normalise and deduplicate the raw items into an image set.

Reads `--raw` (data/raw, written by collect) and writes `--out` (data/clean): `images.npy`
(uint8 (N, C, size, size)), `labels.npy`, `classes.json`, `manifest.csv` (kept items: id, origin,
split, label, class) and `rejected.csv` (id, origin, reason, detail), plus `--metrics`
(metrics/data.json: collected, kept, rejected total and per reason, images per class).
Every collected item is kept or rejected with its reason: kept + rejected == collected.

    python -m stages.clean --raw data/raw --out data/clean --metrics metrics/data.json
"""

from __future__ import annotations

import argparse
import json
import time

from aigc.cleaning import CleanParams, clean
from aigc.errors import exit_on_error
from aigc.files import write_json
from aigc.params import load_section
from aigc.sources import DataParams, class_mapping


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True, help="raw folder written by collect")
    parser.add_argument("--out", required=True, help="image set folder to write")
    parser.add_argument("--metrics", required=True, help="data metrics JSON to write")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        data = load_section(args.params, "data", DataParams)
        params = load_section(args.params, "clean", CleanParams)
        with open(f"{args.raw}/classes.json") as handle:
            class_mapping(json.load(handle), data.classes)  # data.classes must name real classes

    started = time.perf_counter()
    with exit_on_error():  # --raw incomplete, an output not writable
        result = clean(args.raw, args.out, data, params)
        metrics = result.metrics()  # kept + rejected == collected: clean() checks it
        write_json(args.metrics, metrics)
    reasons = {k: v for k, v in metrics["rejected_by_reason"].items() if v}
    print(
        f"clean: {metrics['collected']} collected, {metrics['kept']} kept, "
        f"{metrics['rejected']} rejected {reasons} in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
