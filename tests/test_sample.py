"""aigc.sampling and the sample stage: the image set it writes, its report figures, the grid-only
mode outside DVC, reproducibility, and params errors that name the key."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch
from conftest import random_images, read_grid, write_params

from aigc.checkpoint import save_checkpoint
from aigc.images import GRID_SIZE, make_grid
from aigc.imagesets import ImageSet, load_image_set, save_image_set
from aigc.models import MODELS
from aigc.sampling import slerp

CLASSES = ["a", "b", "c"]


def save_model(path, family: str, conditional: bool = False, **options) -> None:
    """A freshly initialised model of `family`, saved as the train stage would."""
    torch.manual_seed(0)
    config = MODELS[family].Config(
        image_size=16, channels=1, num_classes=3, conditional=conditional, width=8, **options
    )
    model = MODELS[family](config)
    save_checkpoint(
        path,
        {
            "family": family,
            "config": dataclasses.asdict(config),
            "model": model.state_dict(),
            "ema": None,
            "meta": {"classes": CLASSES},
        },
    )


def run_stage(monkeypatch, *arguments: str) -> None:
    from stages import sample as stage

    monkeypatch.setattr(sys, "argv", ["sample", *map(str, arguments)])
    stage.main()


@pytest.fixture
def test_set(tmp_path):
    folder = tmp_path / "test"
    save_image_set(folder, ImageSet(random_images(40, 1, 16), np.arange(40) % 3, CLASSES))
    return folder


def test_slerp_ends_at_its_endpoints_and_keeps_the_norm_between_orthogonal_vectors():
    start, end = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    path = slerp(start, end, torch.tensor([0.0, 0.5, 1.0]))  # (1, 3, 3)
    torch.testing.assert_close(path[0, 0], start[0])
    torch.testing.assert_close(path[0, 2], end[0])
    # Halfway along the 90-degree arc: sin(pi/4) / sin(pi/2) * (a + b).
    half = 0.5**0.5
    expected = torch.tensor([half, 2 * half, 0.0])
    torch.testing.assert_close(path[0, 1], expected)
    same = slerp(start, start, torch.tensor([0.3]))  # parallel: falls back to lerp
    torch.testing.assert_close(same[0, 0], start[0])


def test_stage_writes_the_image_set_info_and_figures(tmp_path, test_set, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {"sample": {"num_samples": 70, "batch_size": 32}})
    save_model(tmp_path / "vae.pt", "vae", latent_dim=4)
    run_stage(monkeypatch, "--checkpoint", "vae.pt", "--test", test_set, "--out", "samples",
              "--reports", "reports", "--timings", "logs/sampling.json")  # fmt: skip
    samples = load_image_set(tmp_path / "samples")
    assert samples.images.shape == (70, 1, 16, 16) and samples.images.dtype == np.uint8
    assert (samples.labels == -1).all() and samples.classes == CLASSES
    info = json.loads((tmp_path / "samples" / "info.json").read_text())
    assert info == {"family": "vae", "num_samples": 70, "conditional": False}  # no timings
    timings = json.loads((tmp_path / "logs" / "sampling.json").read_text())
    assert timings["num_samples"] == 70 and timings["sampling_seconds"] > 0
    assert timings["images_per_second"] == pytest.approx(70 / timings["sampling_seconds"])
    figures = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert figures == ["grid.png", "interpolation.png", "reconstructions.png"]
    # The grid shows the first GRID_SIZE samples of the set, in order (the evaluate stage sets
    # its real images beside exactly these).
    grid = read_grid(tmp_path / "reports" / "grid.png")
    np.testing.assert_array_equal(grid, make_grid(samples.images[:GRID_SIZE]))


def test_conditional_samples_carry_the_requested_labels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_model(tmp_path / "dcgan.pt", "dcgan", conditional=True, latent_dim=8)
    run_stage(monkeypatch, "--checkpoint", "dcgan.pt", "--out", "samples", "--reports", "reports",
              "--num-samples", 9, "--params", write_params(tmp_path))  # fmt: skip
    samples = load_image_set(tmp_path / "samples")
    assert samples.labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2]
    assert json.loads((tmp_path / "samples" / "info.json").read_text())["conditional"] is True
    figures = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert figures == ["classes.png", "grid.png", "interpolation.png"]


def test_classes_flag_asks_a_conditional_model_for_named_or_numbered_classes(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    save_model(tmp_path / "dcgan.pt", "dcgan", conditional=True, latent_dim=8)
    params = write_params(tmp_path)
    run_stage(monkeypatch, "--checkpoint", "dcgan.pt", "--out", "samples", "--reports", "reports",
              "--num-samples", 6, "--classes", "c,0", "--params", params)  # fmt: skip
    assert load_image_set(tmp_path / "samples").labels.tolist() == [2, 0, 2, 0, 2, 0]
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        run_stage(monkeypatch, "--checkpoint", "dcgan.pt", "--out", "x.png", "--classes", "z")
    assert caught.value.code == 2
    assert capsys.readouterr().err == "error: --classes: 'z' is not a class; allowed: a, b, c\n"
    save_model(tmp_path / "gan.pt", "gan", latent_dim=8)
    with pytest.raises(SystemExit) as caught:
        run_stage(monkeypatch, "--checkpoint", "gan.pt", "--out", "x.png", "--classes", "a")
    assert caught.value.code == 2
    assert "--classes: needs a conditional model" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_grid_mode_writes_one_png_without_a_params_file_and_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_model(tmp_path / "gan.pt", "gan", latent_dim=8)
    for name, seed in [("one.png", 1), ("two.png", 1), ("three.png", 2)]:
        run_stage(monkeypatch, "--checkpoint", "gan.pt", "--num-samples", 16, "--seed", seed,
                  "--out", name)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gan.pt",
        "one.png",
        "three.png",
        "two.png",
    ]
    one, two, three = (tmp_path / n for n in ("one.png", "two.png", "three.png"))
    assert one.read_bytes() == two.read_bytes()
    assert one.read_bytes() != three.read_bytes()


def test_two_runs_write_byte_identical_outputs(tmp_path, monkeypatch):
    """DVC caches --out: the same model and params must give the same bytes (so the same
    hash), timings included nowhere in it; only the uncached --timings file may differ."""
    monkeypatch.chdir(tmp_path)
    save_model(tmp_path / "dcgan.pt", "dcgan", latent_dim=8)
    for out in ("first", "second"):
        run_stage(monkeypatch, "--checkpoint", "dcgan.pt", "--out", out, "--reports", f"r-{out}",
                  "--num-samples", 40, "--batch-size", 16, "--timings", f"{out}.json")  # fmt: skip
    for kind in ("", "r-"):
        first = {p.name: p.read_bytes() for p in (tmp_path / f"{kind}first").iterdir()}
        second = {p.name: p.read_bytes() for p in (tmp_path / f"{kind}second").iterdir()}
        assert first == second and len(first) >= 2
    images = load_image_set(tmp_path / "first").images
    assert len(np.unique(images.reshape(40, -1), axis=0)) == 40  # not one image repeated


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--num-samples", "0"], "sample.num_samples = 0 is out of range"),
        (["--sampler", "euler"], "sample.sampler = 'euler' is not allowed"),
        (["--eta", "2"], "sample.eta = 2.0 is out of range"),
    ],
)
def test_bad_sample_params_exit_2_naming_the_key(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    save_model(tmp_path / "gan.pt", "gan", latent_dim=8)
    with pytest.raises(SystemExit) as caught:
        run_stage(monkeypatch, "--checkpoint", "gan.pt", "--out", "grid.png", *arguments)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "grid.png").exists()


def test_bad_sample_section_in_params_yaml_names_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {"sample": {"batch_size": "big"}})
    save_model(tmp_path / "gan.pt", "gan", latent_dim=8)
    with pytest.raises(SystemExit) as caught:
        run_stage(monkeypatch, "--checkpoint", "gan.pt", "--out", "s", "--reports", "r")
    assert caught.value.code == 2
    assert "sample.batch_size = 'big' has the wrong type" in capsys.readouterr().err


def test_a_foreign_checkpoint_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(SystemExit) as caught:
        run_stage(monkeypatch, "--checkpoint", "plain.pt", "--out", "grid.png")
    assert caught.value.code == 1
    assert "plain.pt: not an aigc checkpoint" in capsys.readouterr().err
