"""Stage sample@MODEL: make content from a trained model.

Reads  --checkpoint (aigc.checkpoint), --test (an image set, for reconstructions) and
       params.yaml's `sample` section (flags such as --num-samples override it; without a
       params file the defaults of aigc.sampling.SampleParams apply).
Writes --out: an image set (images.npy uint8, labels.npy: the requested labels when the model
       is conditional, else -1; classes.json) plus info.json {family, num_samples, conditional};
       --reports: grid.png (the first aigc.images.GRID_SIZE samples of --out, 8x8),
       interpolation.png, classes.png (conditional models), reconstructions.png (families
       that encode);
       --timings (optional): {num_samples, sampling_seconds, images_per_second}. Timings stay
       out of --out: DVC caches it, and a wall-clock figure there would give a bit-identical
       re-run a new hash and re-run every stage downstream.

    python -m stages.sample --checkpoint models/dcgan/model.pt --test data/split/test \\
        --out data/samples/dcgan --reports reports/samples/dcgan \\
        --timings logs/dcgan/sampling.json [--params params.yaml]

Outside DVC, an --out ending in .png writes one grid of --num-samples images and nothing else;
a conditional model can be asked for some classes (names or indices, comma-separated):

    python -m stages.sample --checkpoint models/dcgan/model.pt --num-samples 64 --seed 1 \\
        --out grid.png [--classes sneaker,bag]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from aigc import sampling
from aigc.checkpoint import CheckpointError, load_model
from aigc.errors import exit_on_error
from aigc.files import write_json
from aigc.images import GRID_SIZE, save_grid
from aigc.imagesets import ImageSet, load_image_set, save_image_set
from aigc.params import from_dict, read_params


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    grid_only = args.out.endswith(".png")
    with exit_on_error():
        params = sample_params(args)
    with exit_on_error(CheckpointError):
        model, checkpoint = load_model(
            args.checkpoint, "cuda" if torch.cuda.is_available() else "cpu"
        )
        test = load_image_set(args.test) if args.test and not grid_only else None
    with exit_on_error():  # a diffusion model checks steps against its own timesteps
        model.configure_sampling(params.sampler, params.steps, params.eta, params.guidance_scale)
    family = checkpoint["family"]
    classes = list(checkpoint.get("meta", {}).get("classes", []))
    with exit_on_error(ValueError, setting="--classes"):
        wanted = class_indices(args.classes, classes, model) if args.classes else None

    images, labels, seconds = sampling.generate(
        model, params.num_samples, params.batch_size, params.seed, wanted
    )
    if grid_only:
        with exit_on_error():
            save_grid(args.out, images)
        print(f"{family}: {params.num_samples} samples in a grid -> {args.out}")
        return

    count, speed = params.num_samples, params.num_samples / seconds
    with exit_on_error():  # an output not writable
        save_image_set(args.out, ImageSet(images, labels, classes))
        conditional = model.conditional
        info = {"family": family, "num_samples": count, "conditional": conditional}
        write_json(Path(args.out) / "info.json", info)
        save_figures(Path(args.reports), model, images, test, params.seed)
        if args.timings:
            timings = {"num_samples": count, "sampling_seconds": seconds}
            write_json(args.timings, timings | {"images_per_second": speed})
    print(f"{family}: {count} samples in {seconds:.1f} s ({speed:.0f} images/s) -> {args.out}")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="trained model checkpoint")
    parser.add_argument("--out", required=True, help="image set folder, or a .png for a grid")
    parser.add_argument("--reports", help="folder for grid/interpolation/classes/reconstructions")
    parser.add_argument("--test", help="test image set, for reconstructions")
    parser.add_argument("--timings", help="JSON to write the sampling time and speed to")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--classes", help="conditional models: classes to sample, e.g. 0,3 or bag")
    for field in dataclasses.fields(sampling.SampleParams):  # --num-samples etc. override params
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(
            flag, dest=field.name, type=type(field.default), help=field.metadata["doc"]
        )
    args = parser.parse_args(argv)
    if not args.out.endswith(".png") and not args.reports:
        parser.error("--reports is required unless --out is a .png")
    return args


def sample_params(args: argparse.Namespace) -> sampling.SampleParams:
    """params.yaml `sample` (the SampleParams defaults without a params file), flags on top."""
    section = {}
    if Path(args.params).exists() or args.params != "params.yaml":
        section = read_params(args.params).get("sample", {})
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(sampling.SampleParams)}
    section = {**section, **{k: v for k, v in overrides.items() if v is not None}}
    return from_dict(sampling.SampleParams, section, "sample")


def save_figures(reports: Path, model, images, test: ImageSet | None, seed: int) -> None:
    """grid.png, interpolation.png, and classes.png, reconstructions.png where the model can."""
    save_grid(reports / "grid.png", images[:GRID_SIZE])
    save_grid(reports / "interpolation.png", sampling.interpolation(model, seed=seed), columns=10)
    rows = sampling.class_rows(model, seed=seed)
    if rows is not None:
        save_grid(reports / "classes.png", rows, columns=10)
    if test is not None:
        pairs = sampling.reconstruction_pairs(model, test.images, test.labels)
        if pairs is not None:
            save_grid(reports / "reconstructions.png", pairs)


def class_indices(text: str, classes: list[str], model) -> list[int]:
    """`--classes` as indices into the model's classes; ValueError when it cannot be."""
    if not model.conditional:
        raise ValueError("needs a conditional model (train.<family>.conditional)")
    count = model.config.num_classes
    indices = []
    for name in (part.strip() for part in text.split(",")):
        if name in classes:
            indices.append(classes.index(name))
        elif name.isdigit() and int(name) < count:
            indices.append(int(name))
        else:
            allowed = ", ".join(classes) if classes else f"0 to {count - 1}"
            raise ValueError(f"{name!r} is not a class; allowed: {allowed}")
    return indices


if __name__ == "__main__":
    main()
