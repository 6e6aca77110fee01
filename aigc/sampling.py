"""Making content from a trained model: sample sets, grids, interpolations, reconstructions.

Everything here is seeded by a CPU `torch.Generator`, so the same checkpoint and seed give the
same images on the same machine. Images leave as uint8 arrays (N, C, H, W).

- `generate`: `num_samples` images in batches; a conditional model gets balanced labels
  0, 1, ..., K-1, 0, ... (returned), an unconditional one labels -1.
- `interpolation`: rows of images decoded along a spherical interpolation (slerp; Shoemake 1985,
  used for generative models by White 2016, https://arxiv.org/abs/1609.04468) between two
  noise vectors, through the contract's `latents(n, rng)` and `decode(latents, labels)`: the
  noise that `sample` draws and maps (a GAN's z, a VAE's prior sample, a diffusion model's x_T).
- `class_rows`: a row per class (conditional models).
- `reconstruction_pairs`: real images and, below each row of them, their reconstructions
  (families with `encodes`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from aigc.diffusion import SAMPLERS
from aigc.images import to_uint8
from aigc.models.layers import default_labels
from aigc.params import spec

__all__ = [
    "SampleParams",
    "generate",
    "interpolation",
    "class_rows",
    "reconstruction_pairs",
    "slerp",
]


@dataclass(frozen=True)
class SampleParams:
    """The `sample` section of params.yaml (defaults apply when there is no params file)."""

    num_samples: int = spec(default=10000, ge=1, doc="images written")
    batch_size: int = spec(default=500, ge=1, doc="images per forward pass")
    sampler: str = spec(default="dpmpp_2m", choices=SAMPLERS, doc="diffusion sampler")
    steps: int = spec(default=15, ge=1, doc="diffusion sampling steps")
    eta: float = spec(default=0.0, ge=0.0, le=1.0, doc="DDIM eta")
    guidance_scale: float = spec(default=2.0, ge=0.0, doc="classifier-free guidance scale")
    seed: int = spec(default=0, ge=0, doc="seed of the noise")


@torch.no_grad()
def generate(
    model, num_samples: int, batch_size: int, seed: int, classes: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """(images uint8 (N, C, H, W), labels int64 (N,) with -1 = none, seconds taken).

    A conditional model samples `classes` in turn (default: every class, balanced)."""
    rng = torch.Generator().manual_seed(seed)
    conditional = model.conditional
    labels = None
    if conditional:
        wanted = torch.tensor(classes) if classes else torch.arange(model.config.num_classes)
        labels = wanted[default_labels(num_samples, len(wanted))]
    chunks = []
    started = time.perf_counter()
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        batch_labels = labels[start : start + count] if conditional else None
        chunks.append(to_uint8(model.sample(count, batch_labels, rng)))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    images = np.concatenate(chunks)
    label_array = labels.numpy() if conditional else np.full(num_samples, -1)
    return images, label_array.astype(np.int64), seconds


def slerp(start: torch.Tensor, end: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of `start` and `end` (R, *shape) at `weights` (T,)
    -> (R, T, *shape); linear where the two are (nearly) parallel."""
    shape = start.shape[1:]
    a, b = start.flatten(1).double(), end.flatten(1).double()  # (R, D)
    cosine = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    omega = torch.arccos(cosine.clamp(-1.0, 1.0))[:, None, None]  # (R, 1, 1)
    t = weights.double()[None, :, None]  # (1, T, 1)
    sine = torch.sin(omega)
    parallel = sine.abs() < 1e-6
    safe = torch.where(parallel, torch.ones_like(sine), sine)
    spherical = (torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]) / safe
    linear = (1 - t) * a[:, None] + t * b[:, None]
    mixed = torch.where(parallel, linear, spherical)
    return mixed.float().view(len(start), len(weights), *shape)


@torch.no_grad()
def interpolation(model, rows: int = 4, steps: int = 10, seed: int = 0) -> np.ndarray:
    """rows * steps images (uint8), each row from one noise vector to another."""
    rng = torch.Generator().manual_seed(seed)
    ends = model.latents(2 * rows, rng).view(2, rows, *model.latent_shape)
    latents = slerp(ends[0], ends[1], torch.linspace(0, 1, steps)).flatten(0, 1)
    labels = None
    if model.conditional:  # one class per row
        labels = default_labels(rows, model.config.num_classes).repeat_interleave(steps)
    return to_uint8(model.decode(latents, labels))


@torch.no_grad()
def class_rows(model, columns: int = 10, seed: int = 0) -> np.ndarray | None:
    """K rows of `columns` samples, row k of class k (uint8); None for unconditional models."""
    if not model.conditional:
        return None
    labels = torch.arange(model.config.num_classes).repeat_interleave(columns)
    rng = torch.Generator().manual_seed(seed)
    return to_uint8(model.sample(len(labels), labels, rng))


@torch.no_grad()
def reconstruction_pairs(
    model, images: np.ndarray, labels: np.ndarray, count: int = 32, columns: int = 8
) -> np.ndarray | None:
    """`count` real images, evenly spread over `images`, in rows of `columns`, each row followed
    by the row of their reconstructions (uint8); None for families that do not encode (or with
    fewer than `columns` images)."""
    count = min(count, len(images)) // columns * columns  # whole rows only
    if not model.encodes or count == 0:
        return None
    picked = np.linspace(0, len(images) - 1, count).astype(int)
    real = torch.from_numpy(np.asarray(images[picked])).float() / 255
    real_labels = torch.from_numpy(np.asarray(labels[picked], dtype=np.int64))
    conditional_labels = real_labels if model.conditional else None
    rebuilt = to_uint8(model.reconstruct(real, conditional_labels))
    real = to_uint8(real)
    rows = []
    for start in range(0, len(picked), columns):
        rows += [real[start : start + columns], rebuilt[start : start + columns]]
    return np.concatenate(rows)
