"""Collect: gather the items of `data.source` into one packed raw folder.

Reads `data.source` (fashion-mnist, mnist, shapes, folder:PATH, archive:PATH, url:URL#sha256=HEX)
and writes `--out` (data/raw): `items.bin` (every item's bytes, concatenated), `manifest.csv`
(one row per item: id, origin, split, label, class, sha256, offset, size, format, error, detail)
and `classes.json`. Items that cannot be read are kept in the manifest with their `error`; clean
rejects them with that reason. See aigc/sources.py for each source (a folder source needs
`dvc repro -f collect` after its files change: DVC only sees the text of `data.source`).

    python -m stages.collect --out data/raw [--params params.yaml]
"""

from __future__ import annotations

import argparse
import time

from aigc.errors import exit_on_error
from aigc.params import load_section
from aigc.sources import DataParams, SourceError, collect, write_raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="raw folder to write (data/raw)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        data = load_section(args.params, "data", DataParams)

    started = time.perf_counter()
    with exit_on_error(SourceError):  # files missing or failing their checksum, no items at all
        count = write_raw(args.out, collect(data, scratch=args.out))
    seconds = time.perf_counter() - started
    print(f"collect: {count} items from {data.source} into {args.out} in {seconds:.1f} s")


if __name__ == "__main__":
    main()
