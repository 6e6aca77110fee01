"""Collect text: gather the texts of `text.source` into one packed raw folder.

Reads `text.source` (fortunes, file:PATH, folder:PATH, archive:PATH, url:URL#sha256=HEX; see
aigc/text_sources.py) and writes `--out` (data/text/raw) in the image side's raw format
(aigc/sources.py `write_raw`): `items.bin`, `manifest.csv` (one row per text: id, origin, label,
class, sha256, offset, size, format, error, detail) and `classes.json`. Files that cannot be read
are kept in the manifest with their `error`; clean-text rejects them with that reason.

    python -m stages.collect_text --out data/text/raw
"""

from __future__ import annotations

import argparse
import time

from aigc.errors import exit_on_error
from aigc.params import load_section
from aigc.sources import SourceError, write_raw
from aigc.text_sources import TextParams, text_collection


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="raw folder to write (data/text/raw)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error(SourceError):
        params = load_section(args.params, "text", TextParams)

    started = time.perf_counter()
    with exit_on_error(SourceError):  # no such file or folder, a failed download
        count = write_raw(args.out, text_collection(params.source, scratch=args.out))
    seconds = time.perf_counter() - started
    print(f"collect-text: {count} texts from {params.source} into {args.out} in {seconds:.1f} s")


if __name__ == "__main__":
    main()
