"""The evaluator and evaluate stages end to end on tiny synthetic splits, in a temp project:
what they write, the real row, scoring other tools' files, an unlabelled source, bad params.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import CLASSES, grid_tiles, labelled_images, read_grid, write_params
from PIL import Image

from aigc.checkpoint import save_checkpoint
from aigc.features import extract_features, load_evaluator, score_split
from aigc.images import GRID_SIZE, make_grid, save_grid
from aigc.imagesets import ImageSet, load_image_set, save_image_set
from aigc.metrics import reconstruction_quality

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OVERRIDES = {
    "evaluator": {"epochs": 3, "learning_rate": 0.01, "device": "cpu"},
    "evaluate": {
        "device": "cpu",
        "reconstruction_samples": 40,
        "kid_subsets": 10,
        "kid_subset_size": 150,
    },
}


def run_stage(monkeypatch, module: str, *arguments: str) -> None:
    """Run `python -m stages.MODULE ARGUMENTS` in this process (saves the torch import)."""
    import importlib

    stage = importlib.import_module(f"stages.{module}")
    monkeypatch.setattr(sys, "argv", [module, *arguments])
    stage.main()


def make_splits(root, labelled: bool = True, train: int = 1200) -> None:
    for name, count, seed in (("train", train, 1), ("val", 300, 2), ("test", 300, 3)):
        images, labels = labelled_images(count, seed=seed)
        if not labelled:
            labels = np.full(count, -1, dtype=np.int64)
        save_image_set(
            root / "data/split" / name, ImageSet(images, labels, CLASSES if labelled else [])
        )


EVALUATOR_ARGS = (
    "--train",
    "data/split/train",
    "--val",
    "data/split/val",
    "--test",
    "data/split/test",
    "--out",
    "models/evaluator.pt",
    "--metrics",
    "metrics/evaluator.json",
)


@pytest.fixture(scope="module")
def trained_tree(tmp_path_factory):
    """Synthetic splits and an evaluator trained on them by the stage, once for this module."""
    import os

    root = tmp_path_factory.mktemp("trained")
    write_params(root, OVERRIDES)
    make_splits(root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(root)
        run_stage(monkeypatch, "evaluator", *EVALUATOR_ARGS, "--params", str(root / "params.yaml"))
    assert os.path.exists(root / "models/evaluator.pt")
    return root


@pytest.fixture
def evaluated(project, trained_tree):
    """A temp project (the working directory) holding the trained tree's splits and evaluator."""
    write_params(project, OVERRIDES)
    for folder in ("data", "models", "metrics"):
        shutil.copytree(trained_tree / folder, project / folder)
    return project


def test_the_evaluator_stage_writes_its_checkpoint_and_accuracy(evaluated):
    summary = json.loads((evaluated / "metrics/evaluator.json").read_text())
    assert summary["kind"] == "classifier"
    assert 1 <= summary["epochs"] <= 3 and summary["seconds"] > 0
    model, checkpoint = load_evaluator(evaluated / "models/evaluator.pt")
    test, val = (load_image_set(evaluated / f"data/split/{name}") for name in ("test", "val"))
    assert summary["test_accuracy"] == score_split(model, test)["accuracy"] >= 0.9
    assert summary["val_accuracy"] == score_split(model, val)["accuracy"]
    assert checkpoint["meta"]["test_accuracy"] == summary["test_accuracy"]


def test_evaluate_scores_samples_and_the_real_row_in_flat_json(evaluated, monkeypatch, capsys):
    # 500 noisy samples (more than the 300 held-out images of the real row), with labels.
    clean, labels = labelled_images(500, seed=7)
    noise = np.random.default_rng(7).normal(0, 40, clean.shape)
    images = np.clip(clean + noise, 0, 255).astype(np.uint8)
    save_image_set(evaluated / "data/samples/fake", ImageSet(images, labels, CLASSES))
    info = {"family": "fake", "num_samples": 500, "conditional": True}
    (evaluated / "data/samples/fake/info.json").write_text(json.dumps(info))
    run_stage(
        monkeypatch,
        "evaluate",
        "--samples",
        "data/samples/fake",
        "--name",
        "fake",
        "--out",
        "metrics/fake.json",
    )
    fake = json.loads((evaluated / "metrics/fake.json").read_text())
    assert all(not isinstance(value, (dict, list)) for value in fake.values())  # flat keys
    assert fake["name"] == "fake" and fake["samples"] == fake["fid_samples"] == 500
    assert fake["real_n"] == fake["heldout_samples"] == 300  # the like-for-like N
    assert not {"images_per_second", "sampling_seconds", "train_seconds"} & fake.keys()  # logs
    assert fake["reconstruction_ssim"] is None and fake["classes_covered"] == len(CLASSES)
    model, _ = load_evaluator(evaluated / "models/evaluator.pt")  # label accuracy: its own
    assert (
        fake["label_accuracy"] == score_split(model, ImageSet(images, labels, CLASSES))["accuracy"]
    )
    assert "features of samples: 500 images (extracted)" in capsys.readouterr().out

    run_stage(
        monkeypatch,
        "evaluate",
        "--samples",
        "data/split/val",
        "--name",
        "real",
        "--out",
        "metrics/real.json",
    )
    real = json.loads((evaluated / "metrics/real.json").read_text())
    output = capsys.readouterr().out
    assert "features of samples: 300 images (cached)" in output
    assert "features of train: 1200 images (cached)" in output
    assert real["samples"] == real["real_n"] == 300
    for key in ("fid", "fid_se", "precision", "recall", "density", "coverage"):
        assert real[f"{key}_at_real_n"] == real[key], key  # the real row is its own N
    # Noise is visible to the ruler, beyond the noise of the ruler itself.
    gap = fake["fid_at_real_n"] - real["fid"]
    assert gap > 5 * np.hypot(fake["fid_se_at_real_n"], real["fid_se"]), (fake, real)
    assert fake["kid_mean"] - real["kid_mean"] > 3 * np.hypot(fake["kid_se"], real["kid_se"])
    assert fake["fid_se"] > 0 and real["kid_se"] > 0


def test_the_copy_rate_counts_copies_of_training_images(evaluated, monkeypatch):
    # 150 exact training images among 450 samples: they sit at distance 0 from the training
    # set; the 300 fresh ones as close as held-out images are (1 % under the threshold).
    train = load_image_set(evaluated / "data/split/train")
    fresh, fresh_labels = labelled_images(300, seed=17)
    images = np.concatenate([np.asarray(train.images[:150]), fresh])
    labels = np.concatenate([train.labels[:150], fresh_labels])
    save_image_set(evaluated / "data/samples/copies", ImageSet(images, labels, CLASSES))
    arguments = ["--samples", "data/samples/copies", "--out", "metrics/copies.json"]
    run_stage(monkeypatch, "evaluate", *arguments)
    copies = json.loads((evaluated / "metrics/copies.json").read_text())
    assert copies["copy_quantile"] == 0.01 and copies["copy_samples"] == 450
    assert copies["copy_rate"] == pytest.approx(150 / 450, abs=0.02)
    run_stage(monkeypatch, "evaluate", "--samples", "data/split/val", "--out", "metrics/real.json")
    real = json.loads((evaluated / "metrics/real.json").read_text())
    # The threshold is the held-out set's own 1 % quantile, so the real row's rate is 1 % by
    # construction (up to ties): this only checks that the threshold comes from that set.
    assert real["copy_rate"] == pytest.approx(0.01, abs=1 / 300)
    assert real["copy_threshold"] == copies["copy_threshold"] > 0


def test_the_short_form_scores_an_npy_or_an_image_folder_and_only_prints(
    evaluated, monkeypatch, capsys
):
    images, _ = labelled_images(120, seed=8)
    np.save(evaluated / "other.npy", images.transpose(0, 2, 3, 1).astype(np.float32) / 255)
    run_stage(monkeypatch, "evaluate", "--samples", "other.npy")
    output = capsys.readouterr().out
    assert "fid" in output and "coverage" in output and "name" in output
    assert not (evaluated / "metrics/other.json").exists()

    # The same images as grey-valued colour PNGs at the evaluator's size: decoded and made
    # grey again losslessly, so every metric equals that of the array.
    np.save(evaluated / "same.npy", images)
    folder = evaluated / "pngs"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image[0]).convert("RGB").save(folder / f"{index:03d}.png")
    run_stage(monkeypatch, "evaluate", "--samples", "same.npy", "--out", "metrics/same.json")
    run_stage(monkeypatch, "evaluate", "--samples", "pngs", "--out", "metrics/pngs.json")
    from_array = json.loads((evaluated / "metrics/same.json").read_text())
    from_files = json.loads((evaluated / "metrics/pngs.json").read_text())
    assert from_files.pop("name") == "pngs" and from_array.pop("name") == "same"
    assert from_files == from_array and from_files["samples"] == 120

    larger = evaluated / "larger"  # 24 x 24: conformed to the evaluator's 16 x 16
    larger.mkdir()
    for index, image in enumerate(images[:60]):
        Image.fromarray(image[0]).resize((24, 24)).save(larger / f"{index:03d}.png")
    run_stage(monkeypatch, "evaluate", "--samples", "larger", "--out", "metrics/larger.json")
    scored = json.loads((evaluated / "metrics/larger.json").read_text())
    assert scored["samples"] == 60 and scored["classes_covered"] == len(CLASSES)


def test_the_real_grid_holds_a_distinct_test_image_of_each_grid_samples_class(
    evaluated, monkeypatch
):
    images, labels = labelled_images(100, seed=21)  # the grid shows the first 64
    save_image_set(evaluated / "data/samples/fake", ImageSet(images, labels, CLASSES))
    real_grid = evaluated / "reports/real_grids/fake.png"
    run_stage(
        monkeypatch, "evaluate", "--samples", "data/samples/fake", "--real-grid", str(real_grid)
    )
    save_grid(evaluated / "grid.png", images[:GRID_SIZE])  # as the sample stage writes it
    assert Image.open(real_grid).size == Image.open(evaluated / "grid.png").size

    model, _ = load_evaluator(evaluated / "models/evaluator.pt")
    seen = extract_features(model, images[:GRID_SIZE]).probabilities.argmax(axis=1)
    assert len(set(seen.tolist())) == len(CLASSES)  # every class is asked for
    test = load_image_set(evaluated / "data/split/test")
    pool = np.asarray(test.images).reshape(len(test), -1)
    tiles = grid_tiles(read_grid(real_grid), GRID_SIZE, size=16)
    found = []
    for index, tile in enumerate(tiles):
        matches = np.flatnonzero((pool == tile.reshape(-1)).all(axis=1))
        assert len(matches) == 1, index  # a test image, as it is
        assert test.labels[matches[0]] == seen[index], index  # of the class the evaluator sees
        found.append(int(matches[0]))
    assert len(set(found)) == GRID_SIZE  # distinct images
    # Deterministic: the k-th sample of a class gets the k-th test image of that class.
    for label in range(len(CLASSES)):
        chosen = [found[i] for i in np.flatnonzero(seen == label)]
        assert chosen == np.flatnonzero(test.labels == label)[: len(chosen)].tolist()


def test_missing_or_unreadable_samples_and_evaluator_give_one_line(evaluated, monkeypatch, capsys):
    (evaluated / "notes.txt").write_text("not images")
    cases = [
        (["--samples", "missing.npy"], "missing.npy: no such file or folder"),
        (["--samples", "notes.txt"], "notes.txt: not an image set, an .npy file or a folder"),
        (["--samples", "data/split/val", "--evaluator", "notes.txt"], "notes.txt"),
    ]
    for arguments, message in cases:
        with pytest.raises(SystemExit) as stop:
            run_stage(monkeypatch, "evaluate", *arguments)
        assert stop.value.code == 1
        error = capsys.readouterr().err
        assert error.startswith("error: ") and message in error and len(error.splitlines()) == 1


def test_evaluate_adds_reconstructions_from_a_checkpoint(evaluated, monkeypatch):
    from aigc.models import MODELS

    if "vae" not in MODELS:
        pytest.skip("the vae family is not in this tree")
    config = MODELS["vae"].Config(image_size=16, channels=1, num_classes=5, latent_dim=4, width=8)
    model = MODELS["vae"](config)
    save_checkpoint(
        evaluated / "models/vae/model.pt",
        {
            "family": "vae",
            "config": dataclasses.asdict(config),
            "model": model.state_dict(),
            "meta": {"train_seconds": 12.5, "classes": CLASSES},
        },
    )
    images, labels = labelled_images(100, seed=9)
    save_image_set(evaluated / "data/samples/vae", ImageSet(images, labels, CLASSES))
    run_stage(
        monkeypatch,
        "evaluate",
        "--samples",
        "data/samples/vae",
        "--name",
        "vae",
        "--checkpoint",
        "models/vae/model.pt",
        "--out",
        "metrics/vae.json",
    )
    scored = json.loads((evaluated / "metrics/vae.json").read_text())
    assert scored["reconstruction_samples"] == 40
    assert "train_seconds" not in scored  # a timing in the checkpoint is not read
    test = load_image_set(evaluated / "data/split/test")  # the reference set's first 40
    originals = torch.from_numpy(np.array(test.images[:40])).float() / 255
    with torch.no_grad():
        reconstructions = model.eval().reconstruct(originals).numpy()
    ssim, psnr = reconstruction_quality(originals.numpy(), reconstructions)
    assert scored["reconstruction_ssim"] == pytest.approx(ssim, rel=1e-6)
    assert scored["reconstruction_psnr"] == pytest.approx(psnr, rel=1e-6)


def test_an_unlabelled_source_gives_null_class_metrics(project, monkeypatch):
    write_params(project, {**OVERRIDES, "evaluator": {"epochs": 1, "device": "cpu"}})
    make_splits(project, labelled=False, train=300)
    run_stage(monkeypatch, "evaluator", *EVALUATOR_ARGS)
    summary = json.loads((project / "metrics/evaluator.json").read_text())
    assert summary["kind"] == "autoencoder" and summary["test_accuracy"] is None
    arguments = ["--samples", "data/split/val", "--out", "metrics/real.json"]
    run_stage(monkeypatch, "evaluate", *arguments, "--real-grid", "real_grid.png")
    real = json.loads((project / "metrics/real.json").read_text())
    for key in ("inception_score_mean", "classes_covered", "class_kl", "label_accuracy"):
        assert real[key] is None, key
    # No classes to match: the real grid is the reference set's first GRID_SIZE images.
    test = load_image_set(project / "data/split/test")
    expected = make_grid(test.images[:GRID_SIZE])
    np.testing.assert_array_equal(read_grid(project / "real_grid.png"), expected)
    # val against test: two sets from one distribution, in the autoencoder's space.
    assert real["fid"] < 5 * real["fid_se"] and abs(real["kid_mean"]) < 4 * real["kid_se"]
    assert real["density"] == pytest.approx(1.0, abs=0.25)
    assert real["coverage"] == pytest.approx(1 - 2**-5, abs=0.08)


@pytest.mark.parametrize(
    ("stage", "section", "key", "value"),
    [
        ("evaluator", "evaluator", "width", 0),
        ("evaluator", "evaluator", "device", "tpu"),
        ("evaluate", "evaluate", "kid_subsets", -1),
        ("evaluate", "evaluate", "copy_quantile", 1.5),
    ],
)
def test_bad_params_stop_before_any_work_naming_the_key(
    project, monkeypatch, capsys, stage, section, key, value
):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    arguments = EVALUATOR_ARGS if stage == "evaluator" else ("--samples", "nowhere.npy")
    with pytest.raises(SystemExit) as stopped:  # no data exists: params are read first
        run_stage(monkeypatch, stage, *arguments)
    assert stopped.value.code == 2
    assert f"{section}.{key}" in capsys.readouterr().err


def test_an_unknown_key_is_named(project, monkeypatch, capsys):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["kid_subset"] = 10  # a typo of kid_subsets
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit):
        run_stage(monkeypatch, "evaluate", "--samples", "nowhere.npy")
    assert "evaluate.kid_subset: unknown key" in capsys.readouterr().err
