"""Augment: the training image set plus `augment.copies` augmented copies of every image.

Reads `--train` (data/split/train) and writes `--out` (data/train: an image set with the
originals first, then copy 1 of every image, copy 2, ...; labels repeated in the same order) and
`--preview` (reports/augment_preview.png: rows of an original beside its augmentations).
The ops, their strengths and probabilities are in params.yaml `augment` (see aigc/augment.py).

    python -m stages.augment --train data/split/train --out data/train \
        --preview reports/augment_preview.png
"""

from __future__ import annotations

import argparse
import time

from aigc.augment import AugmentParams, preview_grid, write_augmented
from aigc.errors import exit_on_error
from aigc.images import save_grid
from aigc.imagesets import load_image_set
from aigc.params import load_section

PREVIEW_COLUMNS = 8


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="training image set (data/split/train)")
    parser.add_argument("--out", required=True, help="augmented image set to write (data/train)")
    parser.add_argument("--preview", required=True, help="preview grid PNG to write")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        params = load_section(args.params, "augment", AugmentParams)

    started = time.perf_counter()
    with exit_on_error():  # --train missing or not an image set, an output not writable
        train = load_image_set(args.train)
        made = write_augmented(args.out, train, params)
        preview = preview_grid(train.images, params, PREVIEW_COLUMNS)
        save_grid(args.preview, preview, PREVIEW_COLUMNS)
    seconds = time.perf_counter() - started
    print(
        f"augment: {len(train)} originals + {made} augmented images in {seconds:.1f} s "
        f"({made / max(seconds, 1e-9):.0f} images/s)"
    )


if __name__ == "__main__":
    main()
