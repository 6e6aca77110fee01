"""The family contract, checked on every family registered in `MODELS`.

One parametrised test trains each family a few steps through the real loop, stops it with
SIGTERM half-way and resumes it, and checks what every stage relies on: the resumed run ends
with the weights (EMA included) of an uninterrupted one; the checkpoint rebuilds the model;
`sample` gives seeded images in [0, 1] (a text family: seeded token rows, <bos> to one <eos>,
scored by `token_nll`); `decode` maps `latent_shape` noise to images; encoders
reconstruct; a conditional model takes labels and refuses labels it does not know; the
membership score is one deterministic number per image; a family that allows DP-SGD names its
private networks, whose parameters are exactly their optimizers', and trains privately through
the loop within its epsilon (a family that does not is refused with its reason). A family
added to `MODELS` is picked up without touching this file: `test_a_new_family_...` registers
the toy family of `toy_family.py` (one file, one line in MODELS, one params section) and runs
the same checks on it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, TINY, image_set, save_text_split, text_set, write_params

from aigc.checkpoint import load_checkpoint, load_model
from aigc.imagesets import load_image_set, save_image_set
from aigc.models import MODELS
from aigc.models.base import GenerativeModel
from aigc.params import ParamsError
from aigc.sampling import interpolation
from aigc.text_sampling import homotopy
from aigc.text_sets import BOS, EOS, PAD, load_token_set
from aigc.training import TrainingStopped, read_train_params, resume_key, train

STEPS = 6  # training steps of each run
STOP_AT = 3  # the step after which the interrupted run gets SIGTERM


def test_every_family_in_params_is_registered_and_every_registered_one_has_params():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(params["models"]) <= {name for name in MODELS if MODELS[name].modality == "image"}
    assert set(params["text_models"]) <= {
        name for name in MODELS if MODELS[name].modality == "text"
    }
    assert all(family in params["train"] for family in MODELS)


@pytest.mark.parametrize("family", sorted(MODELS))
def test_family_contract(family, tmp_path, monkeypatch, one_torch_thread):
    check_contract(family, TINY["train"].get(family, {}), tmp_path, monkeypatch)


def test_a_new_family_needs_one_file_one_registry_line_one_params_section(
    tmp_path, monkeypatch, one_torch_thread
):
    monkeypatch.setitem(MODELS.modules, "toy", "toy_family")  # the one line in MODELS
    check_contract("toy", {"latent_dim": 4, "learning_rate": 0.01}, tmp_path, monkeypatch)


def check_contract(family: str, section: dict, tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    text = MODELS[family].modality == "text"
    save_text_split(data, text_set(96, seed=3)) if text else save_image_set(data, image_set(96, 3))
    section = {**section, "epochs": 0, "steps": STEPS, "batch_size": 16, "ema_decay": 0.9}

    whole = run(tmp_path / "whole", data, family, section)
    with monkeypatch.context() as patch:
        stop_after(STOP_AT, MODELS[family], patch)
        with pytest.raises(TrainingStopped):
            run(tmp_path / "resumed", data, family, section)
    assert list((tmp_path / "resumed" / ".resume").glob("*/last.pt"))
    resumed = run(tmp_path / "resumed", data, family, section)
    assert resumed["step"] == whole["step"] == STEPS
    for part in ("model", "ema"):
        assert whole[part] is not None, f"{family}: no {part} weights saved"
        for name, tensor in whole[part].items():
            assert torch.equal(tensor, resumed[part][name]), f"{family}: {part}.{name} differs"

    model, _ = load_model(tmp_path / "whole" / "model.pt")
    assert isinstance(model, GenerativeModel) and not model.training
    assert any(module is model.sampling_network for module in model.modules())
    check_text_sampling(model) if text else check_sampling(model)
    check_membership_scores(model)
    conditional = {**section, "conditional": True, "steps": 2}
    run(tmp_path / "conditional", data, family, conditional)
    check_conditional(load_model(tmp_path / "conditional" / "model.pt")[0])
    check_privacy(family, section, data, tmp_path / "private", monkeypatch)


def run(folder: Path, data: Path, family: str, section: dict) -> dict:
    """Train through the real loop with params read as the train stage reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    overrides = {"train": {"common": {"checkpoint_every": 2, "device": "cpu"}, family: section}}
    params = write_params(folder, overrides)
    text = MODELS[family].modality == "text"
    images = load_token_set(data) if text else load_image_set(data, mmap=False)
    common, loop, config, raw = read_train_params(params, family, images)
    resume_dir = folder / ".resume" / resume_key(raw, images)
    out = folder / "model.pt"
    train(family, config, loop, common, images, out=out, live_dir=folder / "live",
          resume_dir=resume_dir, meta={"classes": images.classes})  # fmt: skip
    return load_checkpoint(out)


def stop_after(steps: int, model_class: type, monkeypatch) -> None:
    """Make `model_class.train_step` send this process SIGTERM once `steps` steps are done."""
    real_step = model_class.train_step
    done = []

    def step_then_stop(self, images, labels):
        losses = real_step(self, images, labels)
        done.append(1)
        if len(done) == steps:
            os.kill(os.getpid(), signal.SIGTERM)
        return losses

    monkeypatch.setattr(model_class, "train_step", step_then_stop)


def check_sampling(model: GenerativeModel) -> None:
    config = model.config
    shape = (6, config.channels, config.image_size, config.image_size)
    samples = model.sample(6, rng=torch.Generator().manual_seed(0))
    assert samples.shape == shape and samples.dtype == torch.float32
    assert 0 <= samples.min() and samples.max() <= 1
    assert torch.equal(samples, model.sample(6, rng=torch.Generator().manual_seed(0)))
    assert not torch.equal(samples, model.sample(6, rng=torch.Generator().manual_seed(1)))
    latents = torch.randn(6, *model.latent_shape, generator=torch.Generator().manual_seed(2))
    decoded = model.decode(latents)
    assert decoded.shape == shape and torch.equal(decoded, model.decode(latents))
    assert any(module is model.sampling_network for module in model.modules())
    strip = interpolation(model, rows=2, steps=3)
    assert strip.shape == shape and strip.dtype == np.uint8
    if model.encodes:
        assert model.reconstruct(samples).shape == shape
    else:
        with pytest.raises(NotImplementedError):
            model.reconstruct(samples)


def check_text_sampling(model: GenerativeModel) -> None:
    """Token rows: <bos>, characters, one <eos>, padding; seeded; scored; decoded."""
    length = model.config.max_length
    samples = model.sample(6, rng=torch.Generator().manual_seed(0))
    assert samples.shape == (6, length) and samples.dtype == torch.int64
    assert (samples[:, 0] == BOS).all() and ((samples == EOS).sum(1) == 1).all()
    after_end = (samples == EOS).int().cumsum(1) - (samples == EOS).int() > 0
    assert (samples[after_end] == PAD).all() and not (samples[~after_end] == PAD).any()
    assert torch.equal(samples, model.sample(6, rng=torch.Generator().manual_seed(0)))
    assert not torch.equal(samples, model.sample(6, rng=torch.Generator().manual_seed(1)))
    assert all(isinstance(text, str) for text in model.texts(samples))
    nats = model.token_nll(samples)
    assert nats.shape == (6,) and (nats > 0).all() and torch.isfinite(nats).all()
    assert model.bound in ("exact", "elbo")
    if model.encodes:
        assert model.reconstruct(samples).shape == (6, length)
        path = homotopy(model, text_set(8, seed=5), steps=3)
        assert len(path["texts"]) == 3 and path["from"] != path["to"]
    else:
        with pytest.raises(NotImplementedError):
            model.reconstruct(samples)


def check_membership_scores(model: GenerativeModel) -> None:
    config = model.config
    if model.modality == "text":
        images = model.sample(5, rng=torch.Generator().manual_seed(4))  # token rows
        scores = model.membership_scores(images)
        assert scores.shape == (5,) and torch.isfinite(scores).all()
        assert torch.equal(scores, model.membership_scores(images))
        return
    images = torch.rand(5, config.channels, config.image_size, config.image_size)
    scores = model.membership_scores(images)
    assert scores.shape == (5,) and torch.isfinite(scores).all()
    assert torch.equal(scores, model.membership_scores(images))


def check_privacy(family: str, section: dict, data: Path, folder: Path, monkeypatch) -> None:
    """A family that allows DP-SGD trains privately through the loop within its target, and a
    private run stopped half-way and resumed ends with the weights of an uninterrupted one."""
    target = {"epsilon": 8.0, "delta": 1e-3}
    private = {**section, "steps": 4, "ema_decay": 0.0, "privacy": target}
    # What DP-SGD refuses (test_privacy.py, test_models.py): gan's minibatch_std and packing mix
    # a batch; a VAE's mixture prior reads the data outside the accounting.
    fields = {field.name for field in dataclasses.fields(MODELS[family].Config)}
    refused = {"minibatch_std": False, "packing": 1, "prior_components": 0}
    private.update({key: value for key, value in refused.items() if key in fields})
    model_class = MODELS[family]
    if model_class.Config.cannot_train_privately:
        with pytest.raises(ParamsError, match=f"{family} cannot train with DP-SGD"):
            run(folder, data, family, private)
        return
    checkpoint = run(folder, data, family, private)
    assert 0 < checkpoint["meta"]["privacy_epsilon"] <= target["epsilon"]
    with monkeypatch.context() as patch:
        stop_after(2, MODELS[family], patch)
        with pytest.raises(TrainingStopped):
            run(folder / "resumed", data, family, private)
    resumed = run(folder / "resumed", data, family, private)
    for name, tensor in checkpoint["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), f"{family}: private {name} differs"
    model, _ = load_model(folder / "model.pt")
    networks = model.private_networks()
    assert networks and set(networks) <= set(model.optimizers)
    for name, network in networks.items():
        covered = {id(p) for p in network.parameters() if p.requires_grad}
        optimized = {
            id(p) for group in model.optimizers[name].param_groups for p in group["params"]
        }
        assert covered == optimized, f"{family}: {name} optimizer and network differ"


def check_conditional(model: GenerativeModel) -> None:
    assert model.conditional
    count = model.config.num_classes
    labels = torch.arange(count)
    samples = model.sample(count, labels, rng=torch.Generator().manual_seed(0))
    assert samples.shape[0] == count
    if model.modality == "image":
        assert 0 <= samples.min() and samples.max() <= 1
    with pytest.raises(ValueError, match="labels in 0"):
        model.sample(2, torch.tensor([0, count]))
