"""Training speed of every model family at its default params: images/s and the time a default
run takes on Fashion-MNIST (54 000 training images + 1 augmented copy = 108 000 per epoch).

Each family trains on Fashion-MNIST-like synthetic images (32x32, one channel, 10 labels) with
params.yaml's `train.<family>` section: a few warm-up steps, then `--steps` timed steps. Wall
time and CPU time are both shown: on a shared machine the CPU figure (images per CPU-second)
is the steadier one.

    python -m benchmarks.training [--steps 10] [--params params.yaml]   # or: make bench
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from aigc.imagesets import ImageSet
from aigc.models import MODELS, build_model
from aigc.params import read_params
from aigc.training import read_train_params

EPOCH_IMAGES = 108_000  # the default pipeline's data/train: 54 000 originals + 54 000 copies
WARMUP_STEPS = 3


def fashion_like(count: int = 1024, seed: int = 0) -> ImageSet:
    """Smooth random blobs in a garment-sized box, (N, 1, 32, 32) uint8, labels 0..9."""
    generator = np.random.default_rng(seed)
    coarse = generator.integers(0, 256, size=(count, 1, 7, 7)).astype(np.uint8)
    images = np.zeros((count, 1, 32, 32), dtype=np.uint8)
    images[:, :, 2:30, 2:30] = np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)
    labels = generator.integers(0, 10, size=count)
    return ImageSet(images, labels, [f"class {i}" for i in range(10)])


def measure(family: str, params_path: str, steps: int, image_set: ImageSet) -> dict:
    _, loop, config, _ = read_train_params(params_path, family, image_set)
    torch.manual_seed(0)
    model = build_model(family, config).train()
    images = torch.from_numpy(image_set.images[: loop.batch_size]).float() / 255
    labels = torch.from_numpy(image_set.labels[: loop.batch_size])
    for _ in range(WARMUP_STEPS):
        model.train_step(images, labels)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        model.train_step(images, labels)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done = steps * loop.batch_size
    total_images = (
        loop.steps * loop.batch_size
        if loop.steps
        else loop.epochs * (EPOCH_IMAGES // loop.batch_size) * loop.batch_size
    )
    return {
        "family": family,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": loop.batch_size,
        "images_per_second": done / wall,
        "images_per_cpu_second": done / cpu,
        "default_images": total_images,
        "default_minutes": total_images / (done / wall) / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per family")
    parser.add_argument("--params", default="params.yaml")
    args, _ = parser.parse_known_args()
    read_params(args.params)  # fail early on a missing file
    image_set = fashion_like()
    print(f"torch threads: {torch.get_num_threads()}; {args.steps} timed steps per family")
    header = f"{'family':<8} {'params':>9} {'batch':>5} {'images/s':>9} {'img/cpu-s':>9}"
    print(f"{header} {'default run':>12} {'minutes':>8}")
    for family in MODELS:
        row = measure(family, args.params, args.steps, image_set)
        print(
            f"{family:<8} {row['parameters'] / 1e6:>8.2f}M {row['batch']:>5} "
            f"{row['images_per_second']:>9.0f} {row['images_per_cpu_second']:>9.0f} "
            f"{row['default_images']:>12,} {row['default_minutes']:>8.1f}"
        )


if __name__ == "__main__":
    main()
