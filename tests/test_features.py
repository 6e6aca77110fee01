"""The evaluator: it learns synthetic classes, stops early, round-trips through its checkpoint,
reuses cached features only for identical images, and reads samples in every accepted form."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_EVALUATOR, image_set, random_images, trained_evaluator
from PIL import Image

from aigc.checkpoint import CheckpointError, save_checkpoint
from aigc.features import (
    Features,
    cached_features,
    conform,
    extract_features,
    load_evaluator,
    read_samples,
    save_evaluator,
    score_split,
    train_evaluator,
)
from aigc.imagesets import ImageSet, save_image_set
from aigc.real_grids import real_counterparts, real_grid_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def trained():
    _, model, summary = trained_evaluator()
    return model, summary


def test_the_classifier_learns_the_classes(trained):
    model, summary = trained
    assert summary["kind"] == "classifier"
    assert score_split(model, image_set(500, 3))["accuracy"] >= 0.9
    assert 1 <= summary["best_epoch"] <= summary["epochs"] <= TINY_EVALUATOR.epochs


def test_early_stopping_stops_after_patience_epochs_and_keeps_the_best_epochs_weights():
    # Labels shuffled independently of the images: val accuracy cannot keep improving, so the
    # last epoch (0.200 here) is worse than the best (the first, 0.255).
    train, val = image_set(400, 1), image_set(200, 2)
    train.labels = np.random.default_rng(0).permutation(train.labels)
    params = dataclasses.replace(TINY_EVALUATOR, epochs=30, patience=2, learning_rate=3e-3)
    logged = []
    model, summary = train_evaluator(train, val, params, log=logged.append)
    assert summary["epochs"] < 30
    assert summary["epochs"] - summary["best_epoch"] == 2
    accuracies = [float(line.split()[-3]) for line in logged if "val accuracy" in line]
    assert len(accuracies) == summary["epochs"]
    assert accuracies[-1] < max(accuracies) == pytest.approx(summary["val_accuracy"], abs=5e-5)
    # The model returned is the best epoch's, not the last one's.
    assert score_split(model, val)["accuracy"] == summary["val_accuracy"]


def test_an_unlabelled_source_gets_an_autoencoder_without_probabilities():
    model, summary = train_evaluator(
        image_set(600, 1, labelled=False),
        image_set(200, 2, labelled=False),
        dataclasses.replace(TINY_EVALUATOR, epochs=2),
        log=lambda _: None,
    )
    assert summary["kind"] == "autoencoder" and "val_loss" in summary
    features = extract_features(model, image_set(50, 3).images)
    assert features.embeddings.shape == (50, TINY_EVALUATOR.embedding_dim)
    assert features.probabilities is None


def test_features_are_deterministic_and_probabilities_sum_to_one(trained):
    model, _ = trained
    images = image_set(130, 4).images
    first = extract_features(model, images, batch_size=64)
    second = extract_features(model, images, batch_size=130)
    assert first.embeddings.dtype == np.float32 and first.embeddings.shape == (130, 16)
    np.testing.assert_allclose(first.embeddings, second.embeddings, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(first.probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_checkpoint_round_trip_and_the_feature_cache(trained, tmp_path):
    model, summary = trained
    images = image_set(80, 5).images
    features = extract_features(model, images)
    path = tmp_path / "evaluator.pt"
    save_evaluator(path, model, summary, features={"test": (images, features)})
    loaded, checkpoint = load_evaluator(path)
    assert loaded.config == model.config
    assert checkpoint["meta"]["kind"] == "classifier"

    cached, hit = cached_features(loaded, checkpoint, images)
    assert hit
    np.testing.assert_array_equal(cached.embeddings, features.embeddings)
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1  # one pixel differs: the cache must not answer
    fresh, hit = cached_features(loaded, checkpoint, changed)
    assert not hit
    np.testing.assert_allclose(fresh.embeddings[1:], features.embeddings[1:], rtol=1e-4, atol=1e-5)


def test_a_model_checkpoint_is_not_taken_for_the_evaluator(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"family": "dcgan", "config": {}, "model": {}})
    with pytest.raises(CheckpointError, match="not the evaluator"):
        load_evaluator(path)


def test_read_samples_accepts_image_sets_npy_layouts_and_image_folders(tmp_path):
    images = random_images(6, channels=3, size=16)  # uint8 (N, C, H, W)
    save_image_set(tmp_path / "set", ImageSet(images, np.arange(6) % 2, ["a", "b"]))
    loaded = read_samples(tmp_path / "set")
    np.testing.assert_array_equal(loaded.images, images)
    assert list(loaded.labels) == [0, 1, 0, 1, 0, 1] and loaded.classes == ["a", "b"]

    layouts = {
        "nchw_uint8": images,
        "nhwc_uint8": images.transpose(0, 2, 3, 1),
        "nchw_float": images.astype(np.float32) / 255.0,
        "nhwc_float": images.transpose(0, 2, 3, 1).astype(np.float64) / 255.0,
    }
    for name, array in layouts.items():
        np.save(tmp_path / f"{name}.npy", array)
        np.testing.assert_array_equal(read_samples(tmp_path / f"{name}.npy").images, images)
    np.save(tmp_path / "nhw.npy", images[:, 0])
    np.testing.assert_array_equal(read_samples(tmp_path / "nhw.npy").images, images[:, :1])
    assert (read_samples(tmp_path / "nhw.npy").labels == -1).all()

    np.save(tmp_path / "bad.npy", images.astype(np.float32))  # floats in [0, 255], not [0, 1]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        read_samples(tmp_path / "bad.npy")

    folder = tmp_path / "pngs" / "nested"
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{index}.png")
    np.testing.assert_array_equal(read_samples(tmp_path / "pngs").images, images)


def test_read_samples_decodes_files_as_the_clean_stage_does(tmp_path):
    # The clean stage's decoder (aigc.images): transparency on white, 16-bit scaled (not
    # clipped), a non-square picture cropped to its centred square at the largest side.
    np.save(tmp_path / "bare.npy", random_images(3))
    (tmp_path / "only_images").mkdir()
    np.save(tmp_path / "only_images/images.npy", random_images(3))  # no labels: a bare array
    loaded = read_samples(tmp_path / "only_images")
    np.testing.assert_array_equal(loaded.images, random_images(3))
    assert (loaded.labels == -1).all() and loaded.classes == []

    folder = tmp_path / "mixed"
    folder.mkdir()
    transparent = np.zeros((16, 16, 4), dtype=np.uint8)  # black, fully transparent
    Image.fromarray(transparent, "RGBA").save(folder / "a_transparent.png")
    wide = np.full((16, 16), 65535, dtype=np.uint16)
    wide[:, :8] = 32768
    Image.fromarray(wide).save(folder / "b_sixteen_bit.png")
    strip = np.zeros((8, 16, 3), dtype=np.uint8)
    strip[:, 4:12] = 200  # the centred 8 x 8 square is all 200, the rest black
    Image.fromarray(strip).save(folder / "c_wide.png")
    images = read_samples(folder).images
    assert images.shape == (3, 3, 16, 16)  # RGB: some file is colour; side 16
    assert (images[0] == 255).all()
    assert (images[1][:, :, 8:] == 255).all() and (images[1][:, :, :6] == 128).all()
    assert np.abs(images[2][:, :, 4:12].astype(int) - 200).max() <= 1
    assert images[2].min() > 100  # only the centre: the black sides bleed in a little (Lanczos)

    (folder / "d_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ValueError, match="d_broken.png: cannot decode"):
        read_samples(folder)


def test_conform_converts_channels_and_size():
    colour = random_images(4, channels=3, size=32)
    grey = conform(colour, channels=1, size=16)
    assert grey.shape == (4, 1, 16, 16) and grey.dtype == np.uint8
    expected = Image.fromarray(colour[0].transpose(1, 2, 0)).convert("L")
    same_size = conform(colour, channels=1, size=32)
    assert np.abs(same_size[0, 0].astype(int) - np.asarray(expected, dtype=int)).max() <= 1
    assert conform(grey, channels=3, size=16).shape == (4, 3, 16, 16)
    flat = np.full((2, 1, 20, 12), 77, dtype=np.uint8)  # not square: centre-cropped, resized
    assert (conform(flat, channels=1, size=16) == 77).all()
    assert conform(grey, 1, 16) is grey or np.shares_memory(conform(grey, 1, 16), grey)


def test_real_counterparts_take_each_class_in_turn_distinct_until_the_class_runs_out():
    real = np.array([2, 0, 2, 1, 0, 2])  # class 0 at 1, 4; class 1 at 3; class 2 at 0, 2, 5
    chosen = real_counterparts(np.array([2, 0, 2, 0, 2]), real)
    assert chosen.tolist() == [0, 1, 2, 4, 5]  # in the real set's order, none twice
    assert real_counterparts(np.array([1, 1, 3]), real).tolist() == [3, 3, -1]  # wraps; absent


def test_real_grid_images_use_the_reference_labels_and_leave_absent_classes_blank():
    reference = image_set(30, 5)
    probabilities = np.eye(len(reference.classes), dtype=np.float32)[[4, 0, 4]]
    samples = Features(np.zeros((3, 2), np.float32), probabilities)  # classes 4, 0, 4
    unused = Features(np.zeros((30, 2), np.float32), None)  # labels come from the set itself
    images = real_grid_images(samples, reference, unused, reference.classes, count=2)
    first_of = {label: np.flatnonzero(reference.labels == label)[0] for label in (0, 4)}
    np.testing.assert_array_equal(images, reference.images[[first_of[4], first_of[0]]])
    missing = ImageSet(reference.images, np.where(reference.labels == 4, 0, reference.labels),
                       reference.classes)  # fmt: skip
    blank = real_grid_images(samples, missing, unused, reference.classes, count=3)
    assert (blank[0] == 255).all() and (blank[2] == 255).all() and not (blank[1] == 255).all()


def test_evaluator_runs_on_cuda_when_present(trained):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model, _ = trained
    images = image_set(64, 6).images
    on_cpu = extract_features(model, images)
    on_gpu = extract_features(model.to("cuda"), images, device="cuda")
    model.to("cpu")
    np.testing.assert_allclose(on_gpu.embeddings, on_cpu.embeddings, rtol=1e-2, atol=1e-2)
