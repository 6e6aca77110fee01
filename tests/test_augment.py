"""Augment: determinism, copies, originals preserved, each op doing what it says, the preview.

The warp is checked against trusted references: numpy's flip and rot90 and an integer shift
(exact on pixel centres), and scipy's bilinear `map_coordinates` for a zoom.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
import yaml
from conftest import random_images, tiny_params
from PIL import Image

from aigc.augment import AugmentParams, affine_theta, augment_batch, warp
from aigc.imagesets import ImageSet, load_image_set, save_image_set
from stages.augment import main as augment_main

OFF = {
    "hflip": 0.0, "shift_probability": 0.0, "rotation_probability": 0.0, "zoom_probability": 0.0,
    "crop_probability": 0.0, "noise_probability": 0.0, "brightness_probability": 0.0,
    "contrast_probability": 0.0,
}  # fmt: skip


def params_with(**changes) -> AugmentParams:
    """The repository's augment params with every op off, then `changes`."""
    section = tiny_params({"augment": OFF | changes})["augment"]
    return AugmentParams(**section)


def augment(images: np.ndarray, **changes) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    return augment_batch(torch.from_numpy(images), params_with(**changes), generator).numpy()


@pytest.fixture
def train(tmp_path):
    images = random_images(40, 1, 16, seed=1)
    labels = np.arange(40) % 4
    save_image_set(tmp_path / "train", ImageSet(images, labels, ["a", "b", "c", "d"]))
    return images, labels


def run_augment(tmp_path, name: str, **augment) -> tuple:
    params = tmp_path / f"{name}.yaml"
    params.write_text(yaml.safe_dump(tiny_params({"augment": augment})))
    out, preview = tmp_path / name, tmp_path / f"{name}.png"
    augment_main(
        ["--train", str(tmp_path / "train"), "--out", str(out), "--preview", str(preview),
         "--params", str(params)]
    )  # fmt: skip
    return load_image_set(out), preview


def test_copies_originals_labels_and_determinism(tmp_path, train):
    images, labels = train
    result, preview = run_augment(tmp_path, "a", copies=2, batch_size=16, seed=5)
    assert result.images.shape == (120, 1, 16, 16)
    assert (result.images[:40] == images).all()  # originals first, untouched
    assert (result.labels == np.tile(labels, 3)).all()
    assert result.classes == ["a", "b", "c", "d"]
    assert not (result.images[40:80] == images).all() and not (result.images[80:] == images).all()
    assert not (result.images[40:80] == result.images[80:]).all()  # two different copies

    again, _ = run_augment(tmp_path, "b", copies=2, batch_size=16, seed=5)
    assert np.asarray(again.images).tobytes() == np.asarray(result.images).tobytes()
    other, _ = run_augment(tmp_path, "c", copies=2, batch_size=16, seed=6)
    assert not (other.images[40:] == result.images[40:]).all()

    grid = Image.open(preview)  # 4 rows (tiny params) of 8 cells of 16 px, scale 2
    assert grid.size == (2 * (8 * 18 + 2), 2 * (4 * 18 + 2))


def test_no_copies_is_the_originals(tmp_path, train):
    images, labels = train
    result, preview = run_augment(tmp_path, "a", copies=0)
    assert (result.images == images).all() and (result.labels == labels).all()
    assert preview.exists()


def test_every_op_off_changes_nothing(train):
    images, _ = train
    assert (augment(images, copies=1) == images).all()


def test_horizontal_flip_is_a_mirror(train):
    images, _ = train
    assert (augment(images, hflip=1.0) == images[:, :, :, ::-1]).all()


def test_affine_geometry_is_exact_on_pixel_centres():
    images = torch.from_numpy(random_images(1, 1, 16, seed=2)).float()  # (1, 1, 16, 16)
    reference = images[0, 0].numpy()
    one, still, level = torch.ones(1), torch.zeros(1, 2), torch.zeros(1)

    def warped(flip=one, shift=still, angle=level, zoom=one) -> np.ndarray:
        return warp(images, affine_theta(flip, shift, angle, zoom))[0, 0].numpy()

    assert np.allclose(warped(), reference, atol=1e-4)  # identity
    assert np.allclose(warped(flip=-one), reference[:, ::-1], atol=1e-4)
    clockwise = warped(angle=torch.tensor([np.pi / 2]))
    assert np.allclose(clockwise, np.rot90(reference, k=-1), atol=1e-4)
    right_by_2 = warped(shift=torch.tensor([[0.25, 0.0]]))  # 0.25 of a half side = 2 pixels
    expected = np.zeros_like(reference)
    expected[:, 2:] = reference[:, :-2]
    assert np.allclose(right_by_2, expected, atol=1e-4)
    # zoom 2: output pixel j samples input pixel coordinate 3.75 + j / 2, bilinearly
    coordinates = 3.75 + np.arange(16) / 2
    rows, columns = np.meshgrid(coordinates, coordinates, indexing="ij")
    expected = scipy.ndimage.map_coordinates(reference, [rows, columns], order=1)
    assert np.allclose(warped(zoom=torch.tensor([2.0])), expected, atol=1e-3)


@pytest.mark.parametrize(
    "op",
    [
        {"shift": 0.2, "shift_probability": 1.0},
        {"rotation": 30.0, "rotation_probability": 1.0},
        {"zoom": 0.3, "zoom_probability": 1.0},
        {"crop_padding": 3, "crop_probability": 1.0},
        {"noise_std": 0.1, "noise_probability": 1.0},
        {"brightness": 0.3, "brightness_probability": 1.0},
        {"contrast": 0.5, "contrast_probability": 1.0},
    ],
)
def test_each_op_changes_images(train, op):
    images, _ = train
    changed = (augment(images, **op) != images).any(axis=(1, 2, 3))
    assert changed.mean() > 0.8


def test_random_crop_is_a_shift_with_black_fill():
    images = random_images(20, 1, 16, seed=3)
    out = augment(images, crop_padding=2, crop_probability=1.0)
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for original, cropped in zip(padded, out, strict=True):
        windows = [original[:, y : y + 16, x : x + 16] for y in range(5) for x in range(5)]
        assert any((cropped == window).all() for window in windows)


def test_probabilities_are_respected(train):
    images, _ = train
    many = np.concatenate([images] * 10)  # 400 images
    changed = (augment(many, hflip=0.25) != many).any(axis=(1, 2, 3))
    assert 0.15 < changed.mean() < 0.35
