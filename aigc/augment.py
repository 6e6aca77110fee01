"""The classic augmentation recipe, vectorised over batches of tensors.

Each image of a batch draws, independently, whether each op applies (its own probability) and
how strongly (uniform up to its strength):

    horizontal flip, width/height shift, rotation, zoom   one affine_grid + grid_sample per batch
    random crop                                           pad with black, crop back at an offset
    brightness, contrast                                  x + b;  (x - mean) * c + mean
    Gaussian noise                                        x + std * N(0, 1)

Geometric ops fill uncovered pixels with black (Fashion-MNIST's background). Every draw comes
from one torch.Generator, so the same seed and params give the same bytes.
Flips suit clothes, shoes and most photos; set `hflip: 0` for digits or text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aigc.files import atomic_memmap, release_pages, write_json, write_npy
from aigc.imagesets import ImageSet
from aigc.params import spec


@dataclass(frozen=True)
class AugmentParams:
    """params.yaml `augment`: each op's strength and the probability that it applies."""

    copies: int = spec(ge=0, le=100, doc="augmented copies per image (0 = originals only)")
    hflip: float = spec(ge=0.0, le=1.0, doc="probability of a horizontal flip")
    shift: float = spec(ge=0.0, le=0.5, doc="max shift, share of the side")
    shift_probability: float = spec(ge=0.0, le=1.0)
    rotation: float = spec(ge=0.0, le=180.0, doc="max rotation in degrees")
    rotation_probability: float = spec(ge=0.0, le=1.0)
    zoom: float = spec(ge=0.0, lt=1.0, doc="max zoom in or out, share of the side")
    zoom_probability: float = spec(ge=0.0, le=1.0)
    crop_padding: int = spec(ge=0, le=64, doc="padding before the random crop, pixels")
    crop_probability: float = spec(ge=0.0, le=1.0)
    noise_std: float = spec(ge=0.0, le=1.0, doc="std of Gaussian noise, images in [0, 1]")
    noise_probability: float = spec(ge=0.0, le=1.0)
    brightness: float = spec(ge=0.0, le=1.0, doc="max brightness offset, images in [0, 1]")
    brightness_probability: float = spec(ge=0.0, le=1.0)
    contrast: float = spec(ge=0.0, lt=1.0, doc="max relative contrast change")
    contrast_probability: float = spec(ge=0.0, le=1.0)
    batch_size: int = spec(ge=1, le=1_000_000, doc="images per vectorised batch")
    preview: int = spec(ge=1, le=64, doc="originals in the preview grid")
    seed: int = spec(ge=0, doc="seed of every random draw")


def augment_batch(
    images: torch.Tensor, params: AugmentParams, generator: torch.Generator
) -> torch.Tensor:
    """Augmented copies of uint8 images (B, C, H, W), as uint8 (B, C, H, W)."""
    count = len(images)
    x = images.float() / 255.0  # (B, C, H, W) in [0, 1]
    x = _affine(x, params, generator)
    x = _random_crop(x, params, generator)
    x = _brightness_contrast(x, params, generator)
    if params.noise_std > 0:
        chosen = _chance(count, params.noise_probability, generator).view(-1, 1, 1, 1)
        noise = torch.randn(x.shape, generator=generator)
        x = x + chosen * params.noise_std * noise
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def _chance(count: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """1.0 for the images an op applies to, else 0.0: (B,)."""
    return (torch.rand(count, generator=generator) < probability).float()


def _uniform(count: int, limit: float, generator: torch.Generator) -> torch.Tensor:
    """(B,) draws from U(-limit, limit)."""
    return (torch.rand(count, generator=generator) * 2.0 - 1.0) * limit


def _affine(x: torch.Tensor, params: AugmentParams, generator: torch.Generator) -> torch.Tensor:
    """Flip, shift, rotation and zoom, drawn per image, applied as one warp of the batch."""
    count = len(x)
    flip = 1.0 - 2.0 * _chance(count, params.hflip, generator)  # -1 flips
    shift = _uniform(2 * count, 2.0 * params.shift, generator).view(count, 2)  # side = 2
    shift = shift * _chance(count, params.shift_probability, generator)[:, None]
    angle = _uniform(count, math.radians(params.rotation), generator)
    angle = angle * _chance(count, params.rotation_probability, generator)
    zoom = 1.0 + _uniform(count, params.zoom, generator)
    zoom = torch.where(_chance(count, params.zoom_probability, generator) > 0, zoom, 1.0)
    moved = (flip < 0) | (shift.abs().sum(1) > 0) | (angle != 0) | (zoom != 1)
    if not moved.any():
        return x
    chosen = moved.nonzero()[:, 0]  # only the images that move are resampled
    x = x.clone()
    x[chosen] = warp(x[chosen], affine_theta(flip, shift, angle, zoom)[chosen])
    return x


def affine_theta(
    flip: torch.Tensor, shift: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor
) -> torch.Tensor:
    """(B, 2, 3) matrices for `warp`: flip (B,) of +-1, shift (B, 2) as (x, y) in units of half
    the side, angle (B,) in radians (positive turns the content clockwise on screen), zoom (B,)
    (> 1 enlarges the content).

    `affine_grid` maps output coordinates to input ones, so this is the inverse transform:
    input = diag(flip, 1) R(-angle) (output - shift) / zoom.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(len(angle), 2, 3)
    theta[:, 0, 0] = flip * cos / zoom
    theta[:, 0, 1] = flip * sin / zoom
    theta[:, 1, 0] = -sin / zoom
    theta[:, 1, 1] = cos / zoom
    theta[:, :, 2] = -(theta[:, :, :2] @ shift[:, :, None])[:, :, 0]
    return theta


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample images (B, C, H, W) through `theta` (B, 2, 3): bilinear, black outside."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _random_crop(
    x: torch.Tensor, params: AugmentParams, generator: torch.Generator
) -> torch.Tensor:
    """Pad every side with `crop_padding` black pixels and crop back to size at a random offset."""
    padding = params.crop_padding
    if padding == 0:
        return x
    count, channels, height, width = x.shape
    chosen = _chance(count, params.crop_probability, generator).long()
    offsets = torch.randint(0, 2 * padding + 1, (count, 2), generator=generator)
    offsets = offsets * chosen[:, None] + padding * (1 - chosen[:, None])  # centred = unchanged
    padded = F.pad(x, (padding, padding, padding, padding))  # (B, C, H + 2p, W + 2p)
    rows = offsets[:, 0, None] + torch.arange(height)  # (B, H)
    columns = offsets[:, 1, None] + torch.arange(width)  # (B, W)
    batch = torch.arange(count)[:, None, None, None]
    channel = torch.arange(channels)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], columns[:, None, None, :]]


def _brightness_contrast(
    x: torch.Tensor, params: AugmentParams, generator: torch.Generator
) -> torch.Tensor:
    count = len(x)
    offset = _uniform(count, params.brightness, generator)
    offset = offset * _chance(count, params.brightness_probability, generator)
    factor = 1.0 + _uniform(count, params.contrast, generator)
    factor = torch.where(_chance(count, params.contrast_probability, generator) > 0, factor, 1.0)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * factor.view(-1, 1, 1, 1) + mean + offset.view(-1, 1, 1, 1)


def write_augmented(folder: str | Path, train: ImageSet, params: AugmentParams) -> int:
    """Write `train` then `copies` augmented copies as an image set; return the copies made.

    Rows: originals 0..N-1, then copy k at k*N..(k+1)*N-1; labels repeated in that order, and
    `origins.npy` says which original each row comes from (row i -> i mod N). Written batch by
    batch into a memory-mapped file, so memory stays bounded.
    """
    folder = Path(folder)
    count = len(train)
    generator = torch.Generator().manual_seed(params.seed)
    shape = (count * (params.copies + 1), *train.images.shape[1:])
    with atomic_memmap(folder / "images.npy", shape) as images:
        for start in range(0, count, params.batch_size):
            stop = min(start + params.batch_size, count)
            images[start:stop] = train.images[start:stop]
        for start, batch in augmented_batches(train.images, params, generator):
            images[start : start + len(batch)] = batch
            release_pages(images)  # bounded memory: the pages live on in the files
            release_pages(train.images)
    write_npy(folder / "labels.npy", np.tile(train.labels, params.copies + 1))
    write_npy(folder / "origins.npy", np.tile(np.arange(count, dtype=np.int64), params.copies + 1))
    write_json(folder / "classes.json", list(train.classes))
    return count * params.copies


def augmented_batches(
    images: np.ndarray, params: AugmentParams, generator: torch.Generator
) -> Iterator[tuple[int, np.ndarray]]:
    """(start, augmented uint8 batch) for `copies` passes over `images` (N, C, H, W).

    `start` indexes the output: originals take rows 0..N-1, copy k rows k*N..(k+1)*N-1.
    """
    count = len(images)
    for copy in range(1, params.copies + 1):
        for start in range(0, count, params.batch_size):
            batch = torch.from_numpy(np.array(images[start : start + params.batch_size]))
            yield copy * count + start, augment_batch(batch, params, generator).numpy()


def preview_grid(images: np.ndarray, params: AugmentParams, columns: int = 8) -> np.ndarray:
    """Rows of an original followed by `columns - 1` augmentations of it: (rows * columns, C, H, W).

    The originals are a seeded random pick; the draws come from their own generator, so the
    preview does not change the augmented data.
    """
    picker = np.random.default_rng(params.seed)
    chosen = np.sort(
        picker.choice(len(images), size=min(params.preview, len(images)), replace=False)
    )
    originals = torch.from_numpy(np.array(images[chosen]))  # (P, C, H, W)
    generator = torch.Generator().manual_seed(params.seed + 1)
    repeated = originals.repeat_interleave(columns - 1, dim=0)
    augmented = augment_batch(repeated, params, generator).view(
        len(chosen), columns - 1, *originals.shape[1:]
    )
    rows = torch.cat([originals[:, None], augmented], dim=1)  # (P, columns, C, H, W)
    return rows.reshape(-1, *originals.shape[1:]).numpy()
