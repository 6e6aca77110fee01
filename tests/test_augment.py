"""Augment: determinism, copies, originals preserved, each op doing what it says, the preview.

The warp is checked against trusted references: numpy's flip and rot90 and an integer shift
(exact on pixel centres), and scipy's bilinear `map_coordinates` for a zoom. Each op applies to
its share of images (binomial tolerance) and stays within its strength: a shift moves content by
at most shift x side, a rotation keeps the centre pixel and turns by at most its angle, a zoom
scales by 1 +- zoom, brightness adds one offset within +-brightness, contrast scales about the
mean, noise has the std asked for; and the draws reach close to those limits.
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


def test_random_crop_is_a_shift_with_black_fill():
    images = random_images(20, 1, 16, seed=3)
    out = augment(images, crop_padding=2, crop_probability=1.0)
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for original, cropped in zip(padded, out, strict=True):
        windows = [original[:, y : y + 16, x : x + 16] for y in range(5) for x in range(5)]
        assert any((cropped == window).all() for window in windows)


# ---------------------------------------------------------------------------------------------
# Each op: how often it applies and how strong it is


def dots(count: int, side: int, row: int, column: int, size: int = 3) -> np.ndarray:
    """`count` black (1, side, side) images with one white size x size square at (row, column)."""
    images = np.zeros((count, 1, side, side), np.uint8)
    images[:, :, row : row + size, column : column + size] = 255
    return images


def centroids(images: np.ndarray) -> np.ndarray:
    """(N, 2) brightness-weighted (row, column) centres of single-channel images."""
    weights = images[:, 0].astype(np.float64)
    rows, columns = np.mgrid[0 : images.shape[2], 0 : images.shape[3]]
    total = weights.sum(axis=(1, 2))
    return np.stack(
        [(weights * rows).sum((1, 2)) / total, (weights * columns).sum((1, 2)) / total], 1
    )


PROBABILITY_CASES = [  # (op settings with probability P, P, share of applied ops that show)
    ({"hflip": 0.3}, 0.3, 1.0),
    ({"shift": 0.25, "shift_probability": 0.3}, 0.3, 1.0),
    ({"rotation": 45.0, "rotation_probability": 0.6}, 0.6, 1.0),
    ({"zoom": 0.4, "zoom_probability": 0.2}, 0.2, 1.0),
    ({"crop_padding": 2, "crop_probability": 0.5}, 0.5, 1 - 1 / 25),  # 1 in 25 crops is centred
    ({"noise_std": 0.1, "noise_probability": 0.4}, 0.4, 1.0),
    ({"brightness": 0.3, "brightness_probability": 0.7}, 0.7, 1.0),
    ({"contrast": 0.5, "contrast_probability": 0.3}, 0.3, 1.0),
]


@pytest.mark.parametrize(("op", "probability", "visible"), PROBABILITY_CASES)
def test_each_op_applies_with_its_probability(op, probability, visible):
    count = 2000
    images = random_images(count, 1, 16, seed=4)
    changed = (augment(images, **op) != images).any(axis=(1, 2, 3)).mean()
    expected = probability * visible
    tolerance = 4.5 * np.sqrt(expected * (1 - expected) / count)  # binomial: 4.5 sigma
    slack = 0.02 * probability  # a tiny draw (a 0.1-degree turn) may round to the same bytes
    assert expected - tolerance - slack <= changed <= expected + tolerance, changed


def test_a_shift_moves_content_by_at_most_shift_times_the_side():
    side, shift = 32, 0.2
    images = dots(400, side, 14, 14, size=4)
    moved = centroids(augment(images, shift=shift, shift_probability=1.0)) - centroids(images)
    limit = shift * side  # 6.4 pixels along each axis
    assert np.abs(moved).max() <= limit + 0.05
    assert np.abs(moved).max(axis=0).min() > 0.8 * limit  # and the draws reach the limit
    assert np.abs(moved).mean() > 0.3 * limit  # uniform over +-limit: mean |shift| is limit / 2


def test_a_rotation_keeps_the_centre_pixel_and_turns_by_at_most_its_angle():
    side, degrees = 17, 30.0  # odd side: the centre of rotation is the centre of pixel 8
    generator = np.random.default_rng(5)
    noise = generator.integers(0, 256, size=(200, 1, side, side), dtype=np.uint8)
    turned = augment(noise, rotation=degrees, rotation_probability=1.0)
    assert (turned[:, :, 8, 8] == noise[:, :, 8, 8]).all()

    images = dots(200, side, 1, 7)  # a 3x3 dot centred 6 pixels above the centre
    before = centroids(images) - 8.0  # (row, column) from the centre
    after = centroids(augment(images, rotation=degrees, rotation_probability=1.0)) - 8.0

    def bearing(offsets: np.ndarray) -> np.ndarray:  # degrees clockwise from straight up
        return np.degrees(np.arctan2(offsets[:, 1], -offsets[:, 0]))

    angles = bearing(after) - bearing(before)
    assert np.abs(angles).max() <= degrees + 1.0
    assert np.abs(angles).max() > 0.8 * degrees and (angles > 0).any() and (angles < 0).any()
    radii = np.hypot(*after.T)
    assert np.abs(radii - np.hypot(*before.T)).max() < 0.5  # turned, not moved in or out


def test_a_zoom_scales_content_within_one_plus_or_minus_zoom():
    side, zoom = 32, 0.3
    images = np.zeros((300, 1, side, side), np.uint8)
    images[:, :, 8:24, 8:24] = 255  # a 16-pixel square around the centre
    zoomed = augment(images, zoom=zoom, zoom_probability=1.0).astype(np.float64)
    scale = np.sqrt(zoomed.sum(axis=(1, 2, 3)) / images.sum(axis=(1, 2, 3)))  # area ratio
    assert scale.min() >= 1 - zoom - 0.03 and scale.max() <= 1 + zoom + 0.03
    assert scale.min() < 1 - 0.7 * zoom and scale.max() > 1 + 0.7 * zoom


def test_brightness_adds_one_offset_per_image_within_plus_or_minus_brightness():
    brightness = 0.2
    images = (random_images(500, 1, 16, seed=6) // 2 + 64).astype(np.uint8)  # 64..191: no clipping
    difference = augment(images, brightness=brightness, brightness_probability=1.0).astype(int)
    difference -= images.astype(int)
    offsets = difference.reshape(500, -1)
    assert (offsets.max(axis=1) - offsets.min(axis=1)).max() <= 1  # one offset (+- rounding)
    limit = brightness * 255
    assert np.abs(offsets).max() <= limit + 0.5
    assert offsets.mean(axis=1).max() > 0.8 * limit and offsets.mean(axis=1).min() < -0.8 * limit


def test_contrast_scales_about_the_mean_within_one_plus_or_minus_contrast():
    contrast = 0.4
    images = (random_images(300, 1, 16, seed=7) // 2 + 64).astype(np.uint8)
    out = augment(images, contrast=contrast, contrast_probability=1.0).astype(np.float64)
    original = images.astype(np.float64)
    centred = original - original.mean(axis=(1, 2, 3), keepdims=True)
    factor = ((out - out.mean(axis=(1, 2, 3), keepdims=True)) * centred).sum((1, 2, 3)) / (
        centred**2
    ).sum((1, 2, 3))  # least-squares slope per image
    assert factor.min() >= 1 - contrast - 0.01 and factor.max() <= 1 + contrast + 0.01
    assert factor.min() < 1 - 0.8 * contrast and factor.max() > 1 + 0.8 * contrast
    means = out.mean(axis=(1, 2, 3)) - original.mean(axis=(1, 2, 3))
    assert np.abs(means).max() < 0.6  # the mean stays (up to rounding)


def test_noise_has_the_standard_deviation_asked_for():
    noise_std = 0.05
    images = np.full((200, 1, 16, 16), 128, np.uint8)
    difference = augment(images, noise_std=noise_std, noise_probability=1.0).astype(np.float64)
    difference -= 128
    assert difference.std() == pytest.approx(noise_std * 255, rel=0.03)
    assert abs(difference.mean()) < 0.2
