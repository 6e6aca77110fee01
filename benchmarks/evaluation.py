"""How long the ruler takes: 10 000 samples, feature extraction plus every metric, per part.

Uses the pipeline's real splits (`--data`, default data/split: train, val, test image sets) and
its evaluator (`--evaluator`, default models/evaluator.pt) when present; otherwise Fashion-MNIST-
sized synthetic images (54 000 / 6 000 / 10 000 at 32x32) and an evaluator trained for one short
epoch here (the timings do not depend on how good it is). The samples are the test images.

    python -m benchmarks.evaluation                                  # or: make bench
    python -m benchmarks.evaluation --data /work/fmnist --train-split trainsplit
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from aigc.features import (
    EvaluatorParams,
    cached_features,
    extract_features,
    load_evaluator,
    train_evaluator,
)
from aigc.imagesets import ImageSet, load_image_set
from aigc.metrics import EvaluateParams, score_samples
from aigc.params import load_section

SAMPLES = 10_000


def synthetic_set(count: int, seed: int) -> ImageSet:
    """Fashion-MNIST-sized stand-ins: smooth random blobs, 10 labels, (N, 1, 32, 32)."""
    generator = np.random.default_rng(seed)
    coarse = generator.integers(0, 256, size=(count, 1, 8, 8)).astype(np.float32)
    images = np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)
    labels = generator.integers(0, 10, size=count)
    return ImageSet(images.astype(np.uint8), labels, [f"class {i}" for i in range(10)])


def load_data(folder: Path, train_split: str) -> tuple[dict[str, ImageSet], str]:
    names = {"train": train_split, "val": "val", "test": "test"}
    if all((folder / name / "images.npy").is_file() for name in names.values()):
        return {role: load_image_set(folder / name) for role, name in names.items()}, str(folder)
    sizes = {"train": 54_000, "val": 6_000, "test": 10_000}
    return {
        role: synthetic_set(n, seed) for seed, (role, n) in enumerate(sizes.items())
    }, "synthetic"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/split"))
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--evaluator", type=Path, default=Path("models/evaluator.pt"))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--uncached", action="store_true", help="ignore the feature cache")
    args = parser.parse_args(argv if argv is not None else [])
    params = load_section(args.params, "evaluate", EvaluateParams)
    device = "cpu"

    started = time.perf_counter()
    sets, source = load_data(args.data, args.train_split)
    if args.evaluator.is_file():
        model, checkpoint = load_evaluator(args.evaluator, device)
        how = str(args.evaluator)
        if args.uncached:
            checkpoint, how = {}, f"{how}, feature cache ignored"
    else:
        quick = dataclasses.replace(
            load_section(args.params, "evaluator", EvaluatorParams), epochs=1, device=device
        )
        subset = ImageSet(
            sets["train"].images[:10_000], sets["train"].labels[:10_000], sets["train"].classes
        )
        model, _ = train_evaluator(subset, sets["val"], quick, log=lambda _: None)
        checkpoint, how = {}, "trained here for one epoch on 10 000 images"
    print(f"data: {source}; evaluator: {how}; setup {time.perf_counter() - started:.1f} s")

    samples = np.asarray(sets["test"].images[:SAMPLES])
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    features = {"samples": extract_features(model, samples, params.batch_size, device)}
    timings["features: samples"] = time.perf_counter() - clock
    for role, name in (("reference", "test"), ("heldout", "val"), ("train", "train")):
        clock = time.perf_counter()
        found, hit = cached_features(
            model, checkpoint, sets[name].images, params.batch_size, device
        )
        features[role] = found
        timings[
            f"features: {role} ({len(found.embeddings)}, {'cached' if hit else 'extracted'})"
        ] = time.perf_counter() - clock
    score_samples(**features, params=params, classes=model.config.classes, timings=timings)

    total = sum(timings.values())
    width = max(map(len, timings))
    for part, seconds in timings.items():
        print(f"  {part:<{width}}  {seconds:6.1f} s")
    print(f"  {'total (10 000 samples, target < 60 s)':<{width}}  {total:6.1f} s")
    uncached = sum(v for k, v in timings.items() if k.startswith("features"))
    print(f"  (of which feature extraction {uncached:.1f} s, metrics {total - uncached:.1f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
