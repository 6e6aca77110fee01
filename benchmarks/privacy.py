"""What DP-SGD costs in speed: images/s of each family's training step, plain and private,
measured side by side in one run (the ratio is the figure to quote; machines differ).

Each family that allows privacy trains at its params.yaml section and batch size on the
synthetic images of benchmarks/training.py, once as configured and once with
`privacy.noise_multiplier = 1` (per-sample gradients, clipping and noise on its private
networks, aigc/privacy.py); `gan` runs both without minibatch_std and packing, the VAEs
without their mixture prior, which DP-SGD refuses.

    python -m benchmarks.privacy [--steps 10] [--params params.yaml]   # or: make bench
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from aigc.models import MODELS, build_model
from aigc.privacy import PrivacyConfig, PrivateTraining
from aigc.training import read_train_params
from benchmarks.training import WARMUP_STEPS, fashion_like

TRAINING_IMAGES = 54_000  # Fashion-MNIST's originals: the Poisson batches' population


def images_per_second(family: str, config, batch_size: int, steps: int, image_set) -> float:
    torch.manual_seed(0)
    model = build_model(family, config).train()
    if config.privacy.enabled:
        PrivateTraining(model, config.privacy, TRAINING_IMAGES, batch_size, 1000, family)
    images = torch.from_numpy(image_set.images[:batch_size]).float() / 255
    labels = torch.from_numpy(image_set.labels[:batch_size])
    for _ in range(WARMUP_STEPS):
        model.train_step(images, labels)
    wall = time.perf_counter()
    for _ in range(steps):
        model.train_step(images, labels)
    return steps * batch_size / (time.perf_counter() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--params", default="params.yaml")
    args, _ = parser.parse_known_args()
    image_set = fashion_like()
    print(f"torch threads: {torch.get_num_threads()}; {args.steps} timed steps per run")
    print(f"{'family':<8} {'batch':>5} {'plain img/s':>11} {'DP img/s':>9} {'DP / plain':>10}")
    for family in MODELS:
        if MODELS[family].Config.cannot_train_privately:
            print(f"{family:<8} (cannot train privately)")
            continue
        _, loop, config, _ = read_train_params(args.params, family, image_set)
        # What DP-SGD refuses (it mixes a batch, or reads data outside the accounting), off
        # in both runs so that they compare.
        refused = {"minibatch_std": False, "packing": 1, "prior_components": 0}
        config = dataclasses.replace(
            config, **{key: value for key, value in refused.items() if hasattr(config, key)}
        )
        private = dataclasses.replace(config, privacy=PrivacyConfig(noise_multiplier=1.0))
        plain_rate = images_per_second(family, config, loop.batch_size, args.steps, image_set)
        dp_rate = images_per_second(family, private, loop.batch_size, args.steps, image_set)
        print(
            f"{family:<8} {loop.batch_size:>5} {plain_rate:>11.0f} {dp_rate:>9.0f} "
            f"{dp_rate / plain_rate:>10.2f}"
        )


if __name__ == "__main__":
    main()
