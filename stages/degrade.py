"""Degrade: the training split as a data experiment asks for it (a no-op copy by default).

Reads `--train` (data/split/train) and writes `--out` (data/degraded): a stratified
`split.train_fraction` of the split, corrupted on purpose as `degrade` says (label flips,
broken files, duplicates) and re-cleaned by the clean stage's checks unless `degrade.clean` is
false; and `--metrics` (metrics/training_data.json: what was injected, what the cleaner
caught, what trains). Only the training split changes, so the evaluator and the reference sets
stay the same at every point of a sweep. See aigc/degrade.py.

    python -m stages.degrade --train data/split/train --out data/degraded \
        --metrics metrics/training_data.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from aigc.cleaning import CleanParams
from aigc.degrade import DegradeParams, degrade
from aigc.errors import exit_on_error
from aigc.files import write_json
from aigc.imagesets import load_image_set
from aigc.params import load_section
from aigc.sources import DataParams
from aigc.splits import SplitParams, read_clean_manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="training split (data/split/train)")
    parser.add_argument("--out", required=True, help="image set folder to write")
    parser.add_argument("--metrics", required=True, help="training-data metrics JSON to write")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        params = load_section(args.params, "degrade", DegradeParams)
        split = load_section(args.params, "split", SplitParams)
        data = load_section(args.params, "data", DataParams)
        clean_params = load_section(args.params, "clean", CleanParams)

    started = time.perf_counter()
    with exit_on_error():  # --train missing or not an image set, an output not writable
        train = load_image_set(args.train)
        manifest = read_clean_manifest(Path(args.train) / "manifest.csv")
        result = degrade(train, manifest, args.out, split.train_fraction, split.seed, params,
                         data, clean_params)  # fmt: skip
        metrics = result.metrics()
        write_json(args.metrics, metrics)
    injected = {kind: n for kind, n in metrics["injected"].items() if n}
    print(
        f"degrade: {metrics['share']} of {metrics['split_images']} training images, "
        f"injected {injected or 'nothing'}, {metrics['rejected']} rejected, "
        f"{metrics['images']} kept in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
