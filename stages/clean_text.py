"""Clean text: decode, normalise, scrub PII, filter and deduplicate the raw texts.

Reads `--raw` (data/text/raw, written by collect-text) and writes `--out` (data/text/clean): a
text set (`texts.csv`: id, origin, label, class, text; `classes.json`) and `rejected.csv` (id,
origin, reason, detail); and `--metrics` (metrics/text_data.json: collected, kept, rejected
total and per reason, texts per class, characters removed and PII replaced per kind). Every
collected text is kept or rejected with its reason: kept + rejected == collected. The checks and
their order are in aigc/text_cleaning.py; `text.classes` keeps those categories.

    python -m stages.clean_text --raw data/text/raw --out data/text/clean \
        --metrics metrics/text_data.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from aigc.errors import exit_on_error
from aigc.files import write_json, write_text
from aigc.params import load_section
from aigc.sources import class_mapping, read_manifest
from aigc.text_cleaning import TextCleanParams, clean_texts
from aigc.text_sets import COLUMNS, TextSet, save_text_set
from aigc.text_sources import TextParams


def raw_items(raw: Path):
    """(id, origin, label, bytes, error, format) of every item of a raw folder, in order."""
    manifest = read_manifest(raw / "manifest.csv")
    with open(raw / "items.bin", "rb") as handle:
        content = handle.read()
    for row in manifest.itertuples():
        data = content[row.offset : row.offset + row.size]
        yield row.id, row.origin, row.label, data, row.error, row.format


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True, help="raw folder written by collect-text")
    parser.add_argument("--out", required=True, help="text set folder to write")
    parser.add_argument("--metrics", required=True, help="text data metrics JSON to write")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    raw = Path(args.raw)
    with exit_on_error():
        text = load_section(args.params, "text", TextParams)
        params = load_section(args.params, "text_clean", TextCleanParams)
        source_classes = json.loads((raw / "classes.json").read_text())
        classes, label_map = class_mapping(source_classes, text.classes, key="text.classes")

    started = time.perf_counter()
    with exit_on_error():  # --raw incomplete, an output not writable
        result = clean_texts(raw_items(raw), classes, params, label_map)
        kept = pd.DataFrame(result.kept, columns=COLUMNS)
        save_text_set(args.out, TextSet(kept, classes))
        rejected = pd.DataFrame(result.rejected, columns=["id", "origin", "reason", "detail"])
        write_text(Path(args.out) / "rejected.csv", rejected.to_csv(index=False))
        metrics = result.metrics(classes)
        write_json(args.metrics, metrics)
    reasons = {k: v for k, v in metrics["rejected_by_reason"].items() if v}
    pii = {k: v for k, v in metrics["pii_replaced"].items() if v}
    print(
        f"clean-text: {metrics['collected']} collected, {metrics['kept']} kept, "
        f"{metrics['rejected']} rejected {reasons}, PII replaced {pii or 'none'} "
        f"in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
