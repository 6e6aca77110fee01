"""Split: divide the clean image set into train, val and test image sets.

Reads `--clean` (data/clean: images.npy, labels.npy, classes.json, manifest.csv) and writes
`--out`/train, `--out`/val, `--out`/test (data/split/...), each an image set plus a manifest.csv
of its items' ids. Stratified by label and seeded; a source's official test split is kept
(see aigc/splits.py).

    python -m stages.split --clean data/clean --out data/split
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aigc.errors import exit_on_error
from aigc.imagesets import load_image_set
from aigc.params import load_section
from aigc.splits import SPLITS, SplitParams, read_clean_manifest, split_indices, write_subset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", required=True, help="clean image set folder")
    parser.add_argument("--out", required=True, help="folder for train/, val/, test/")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        params = load_section(args.params, "split", SplitParams)

    with exit_on_error():  # --clean missing or not an image set, --out not writable
        image_set = load_image_set(args.clean)
        manifest = read_clean_manifest(Path(args.clean) / "manifest.csv")
        indices = split_indices(image_set.labels, manifest["split"].to_numpy(), params)
        for name in SPLITS:
            write_subset(Path(args.out) / name, image_set, manifest, indices[name])
    sizes = ", ".join(f"{name} {len(indices[name])}" for name in SPLITS)
    print(f"split: {len(image_set)} items into {sizes}")


if __name__ == "__main__":
    main()
