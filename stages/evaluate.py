"""Stage `evaluate`: score one model's samples (or any images) on the evaluator's ruler.

Reads `--samples` (an image set, an `.npy` of uint8 or [0, 1] floats, or a folder of image
files), the evaluator checkpoint, and the real splits: `--reference` (what samples are compared
with), `--heldout` (real images the model never saw: the yardstick of the copy rate, and the
real row's N at which the `*_at_real_n` keys score the samples like for like) and `--train`.
Every row gets a membership-inference audit (aigc/membership.py: `--train` images against
`--reference` images, by their distance to the samples); with `--checkpoint`, also the model's
own white-box attack, its privacy budget when it trained with DP-SGD, and, for families that
encode, reconstruction SSIM/PSNR on the reference images. Prints the table; writes it as flat
JSON to `--out` when given. With `--real-grid`, writes a PNG of real images to set beside the
sample grid: for the first aigc.images.GRID_SIZE samples (those the sample stage's grid.png
shows), tile i is a `--reference` image of the class the evaluator sees in sample i
(aigc.real_grids.real_grid_images). Training time and sampling speed are not read here: they
live in the uncached logs (logs/MODEL/metrics.json, logs/MODEL/sampling.json), which the report
reads.

    python -m stages.evaluate --samples data/samples/dcgan --name dcgan \
        --checkpoint models/dcgan/model.pt --out metrics/dcgan.json \
        --real-grid reports/real_grids/dcgan.png
    python -m stages.evaluate --samples other_tool_samples.npy      # score anything, print only
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from aigc.checkpoint import CheckpointError, load_model
from aigc.devices import resolve_device
from aigc.errors import exit_on_error
from aigc.features import cached_features, conform, load_evaluator, read_samples
from aigc.files import write_json
from aigc.images import GRID_SIZE, save_grid
from aigc.imagesets import load_image_set
from aigc.membership import audit
from aigc.metrics import EvaluateParams, format_table, model_metrics, score_samples
from aigc.params import load_section
from aigc.privacy import recorded_budget
from aigc.real_grids import real_grid_images


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", required=True, help="image set, .npy or folder of images")
    parser.add_argument("--name", help="row name (default: the samples' file or folder name)")
    parser.add_argument("--checkpoint", help="the model that made the samples (optional)")
    parser.add_argument("--evaluator", default="models/evaluator.pt")
    parser.add_argument("--reference", default="data/split/test")
    parser.add_argument("--heldout", default="data/split/val")
    parser.add_argument("--train", default="data/split/train")
    parser.add_argument("--out", help="metrics JSON to write (default: print only)")
    parser.add_argument("--real-grid", help="PNG to write: real images of the grid's classes")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        params = load_section(args.params, "evaluate", EvaluateParams)
    with exit_on_error():  # cuda without a GPU
        device = resolve_device(params.device, "evaluate.device")
    name = args.name or Path(args.samples).stem

    started = time.perf_counter()
    with exit_on_error(CheckpointError, ValueError):  # inputs missing, unreadable or misshapen
        evaluator, evaluator_checkpoint = load_evaluator(args.evaluator, device)
        samples = read_samples(args.samples)
        reference, train = load_image_set(args.reference), load_image_set(args.train)
        images = {
            "samples": samples.images,
            "reference": reference.images,
            "heldout": load_image_set(args.heldout).images,
            "train": train.images,
        }
    channels, size = evaluator.config.channels, evaluator.config.image_size
    features = {}
    for role, found in images.items():
        found = conform(found, channels, size)
        features[role], hit = cached_features(
            evaluator, evaluator_checkpoint, found, params.batch_size, device
        )
        print(f"features of {role}: {len(found)} images ({'cached' if hit else 'extracted'})")
    print(f"features: {time.perf_counter() - started:.1f} s")

    classes = list(evaluator.config.classes)
    labels = samples.labels if list(samples.classes) == classes else None
    timings: dict[str, float] = {}
    metrics = {"name": name}
    metrics.update(
        score_samples(
            **features, params=params, classes=classes, timings=timings, sample_labels=labels
        )
    )
    with exit_on_error(CheckpointError):
        model, checkpoint = load_model(args.checkpoint, device) if args.checkpoint else (None, {})
    metrics.update(model_metrics(model, reference, params, device))
    metrics.update(recorded_budget(checkpoint))
    metrics.update(
        audit(features["samples"].embeddings, features["train"].embeddings,
              features["reference"].embeddings, params, model, train, reference, device)
    )  # fmt: skip
    for part, seconds in timings.items():
        print(f"{part}: {seconds:.1f} s")

    print(format_table(metrics))
    with exit_on_error():  # an output not writable
        if args.out:
            write_json(args.out, metrics)
        if args.real_grid:
            real = real_grid_images(
                features["samples"], reference, features["reference"], classes, GRID_SIZE
            )
            save_grid(args.real_grid, real)
            print(f"real images of the grid's classes -> {args.real_grid}")
    print(f"evaluate {name}: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
