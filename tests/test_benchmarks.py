"""The textbook benchmark (benchmarks/textbook.py): its two models against their textbook
definitions, and the whole suite end to end on tiny synthetic data with a tiny evaluator."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CLASSES, labelled_images, trained_evaluator, write_params
from torch import nn

from aigc.features import save_evaluator
from aigc.imagesets import ImageSet, save_image_set
from aigc.sampling import generate
from benchmarks import textbook

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_set(count: int = 256, size: int = 16, seed: int = 0) -> ImageSet:
    images, labels = labelled_images(count, size=size, seed=seed)
    return ImageSet(images, labels, list(CLASSES))


def linear_sizes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def test_textbook_vae_is_the_pytorch_examples_vae():
    image_set = tiny_set()
    model = textbook.build(textbook.TextbookVAE, image_set, torch.device("cpu"))
    pixels = 16 * 16
    assert linear_sizes(model.encoder) == [(pixels, 400), (400, 20), (400, 20)]
    assert linear_sizes(model.decoder) == [(20, 400), (400, pixels)]
    images = torch.from_numpy(image_set.images[:32]).float() / 255

    # The loss equals pytorch/examples' loss_function on the same noise: BCE of the sigmoid
    # output, summed, plus -1/2 sum(1 + logvar - mu^2 - exp(logvar)).
    torch.manual_seed(1)
    reconstruction, kl = model.loss_terms(images)
    torch.manual_seed(1)
    mu, logvar = model.encoder(images)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    decoded = torch.sigmoid(model.decoder(z)).view(-1, pixels)
    expected_bce = F.binary_cross_entropy(decoded, images.view(-1, pixels), reduction="sum")
    expected_kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    assert reconstruction.item() == pytest.approx(expected_bce.item(), rel=1e-5)
    assert kl.item() == pytest.approx(expected_kl.item(), rel=1e-5)

    before = reconstruction.item() / 32
    seconds = textbook.fit(model, image_set, 32, 40)
    losses = model.train_step(images, torch.zeros(32, dtype=torch.long))
    assert seconds > 0 and all(math.isfinite(v) for v in losses.values())
    assert losses["reconstruction"] < before  # it learns
    samples = model.eval().sample(5)
    assert samples.shape == (5, 1, 16, 16) and 0 <= samples.min() and samples.max() <= 1


def test_textbook_gan_is_the_classic_mlp_gan():
    image_set = tiny_set()
    model = textbook.build(textbook.TextbookGAN, image_set, torch.device("cpu"))
    assert linear_sizes(model.generator) == [
        (100, 128), (128, 256), (256, 512), (512, 1024), (1024, 256)
    ]  # fmt: skip
    assert linear_sizes(model.discriminator) == [(256, 512), (512, 256), (256, 1)]
    norms = [m.num_features for m in model.generator.modules() if isinstance(m, nn.BatchNorm1d)]
    assert norms == [256, 512, 1024]  # every hidden layer but the first
    activations = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(activations) == 6 and {m.negative_slope for m in activations} == {0.2}
    for optimizer in model.optimizers.values():
        assert optimizer.defaults["lr"] == 2e-4 and optimizer.defaults["betas"] == (0.5, 0.999)

    images = torch.from_numpy(image_set.images[:16]).float() / 255
    losses = model.train_step(images, torch.zeros(16, dtype=torch.long))
    assert set(losses) == {"g_loss", "d_loss"} and all(map(math.isfinite, losses.values()))
    # At the start D is near chance: G's loss is near log 2, D's mean of two terms too.
    assert losses["g_loss"] == pytest.approx(math.log(2), abs=0.2)
    assert losses["d_loss"] == pytest.approx(math.log(2), abs=0.2)


@pytest.mark.parametrize("model_class", [textbook.TextbookVAE, textbook.TextbookGAN])
def test_textbook_training_and_sampling_are_seeded(model_class):
    image_set = tiny_set()
    runs = []
    for _ in range(2):
        model = textbook.build(model_class, image_set, torch.device("cpu"))
        textbook.fit(model, image_set, 32, 10)
        runs.append(generate(model.eval(), 20, 8, textbook.SEED)[0])
    assert runs[0].shape == (20, 1, 16, 16) and runs[0].dtype == np.uint8
    np.testing.assert_array_equal(runs[0], runs[1])


def test_textbook_without_pipeline_outputs_says_run_make_repro(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert textbook.main(["--samples", "10"]) is None
    output = capsys.readouterr().out.strip()
    assert len(output.splitlines()) == 1 and "make repro" in output
    assert "data/train" in output and "models/evaluator.pt" in output


def test_textbook_suite_end_to_end(tmp_path, monkeypatch, capsys):
    """Both rows trained and scored by the evaluate stage, beside the pipeline's rows."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {"evaluate": {"device": "cpu"}})
    for name, count, seed in (("train", 600, 1), ("val", 200, 2), ("test", 200, 3)):
        images, labels = labelled_images(count, seed=seed)
        save_image_set(tmp_path / "data/split" / name, ImageSet(images, labels, CLASSES))
    save_image_set(tmp_path / "data/train", tiny_set(600, seed=1))
    _, evaluator, summary = trained_evaluator()
    save_evaluator(tmp_path / "models/evaluator.pt", evaluator, summary)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/real.json").write_text(json.dumps({"fid": 0.1, "fid_se": 0.02}))
    (tmp_path / "metrics/gan.json").write_text(json.dumps({"fid": 85.0, "recall": 0.25}))
    (tmp_path / "logs/gan").mkdir(parents=True)
    (tmp_path / "logs/gan/metrics.json").write_text(json.dumps({"train_seconds": 161.0}))

    rows = textbook.main(["--vae-epochs", "1", "--gan-steps", "8", "--samples", "150"])
    rows = {row.name: row for row in rows}
    for name in ("textbook-vae", "textbook-gan"):
        metrics = rows[name].metrics
        assert metrics["samples"] == 150 and metrics["reference_samples"] == 200
        assert metrics["fid"] > 0 and metrics["fid_se"] > 0
        assert 0 <= metrics["recall"] <= 1 and 0 <= metrics["coverage"] <= 1
        assert 0 <= metrics["classes_covered"] <= len(CLASSES) and metrics["class_kl"] >= 0
        assert metrics["train_seconds"] > 0
    assert rows["gan"].metrics["train_seconds"] == 161.0
    assert rows["dcgan"].metrics is None and rows["dcgan"].notes  # no metrics/dcgan.json

    table = capsys.readouterr().out
    assert "| Model | Train s | FID ↓ | Recall ↑ | Coverage ↑ | Classes | Class KL ↓ |" in table
    assert "| **real** | – | 0.10 ± 0.02 |" in table
    assert "| gan | 161 | 85.00 | 0.250 | – |" in table
    assert f"| textbook-gan | {rows['textbook-gan'].metrics['train_seconds']:.0f} |" in table


def test_text_suite_prints_each_text_family_s_training_and_sampling_speed(
    tmp_path, monkeypatch, capsys
):
    import benchmarks.text

    write_params(tmp_path)  # no text split here: the templated texts
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["text", "--steps", "1", "--samples", "2"])
    benchmarks.text.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("text data: templated, 512 texts")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"charrnn", "textvae", "gpt"}
    for row in rows.values():
        assert float(row[2]) > 0 and float(row[3]) > 0  # characters per second
