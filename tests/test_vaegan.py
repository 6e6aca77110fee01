"""The vaegan family (aigc/models/vaegan.py) on tiny configs and images."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from conftest import REPO, TINY, random_images

from aigc.checkpoint import config_dict, load_model, save_checkpoint
from aigc.models import MODELS
from aigc.models.vaegan import VAEGAN, Config
from aigc.params import ParamsError, from_dict

LOOP_KEYS = ("epochs", "steps", "batch_size", "ema_decay")
DATA = {"image_size": 16, "channels": 1, "num_classes": 3}


def tiny_config(**overrides) -> Config:
    return Config(**{**DATA, "latent_dim": 4, "width": 8, "learning_rate": 1e-3, **overrides})


def batch(count: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(random_images(count, size=16, seed=seed)).float() / 255
    return images, torch.arange(count) % 3


def test_registered_and_encodes():
    assert MODELS["vaegan"] is VAEGAN and VAEGAN.encodes


@pytest.mark.parametrize("section", ["repo", "tiny"])
def test_params_sections_build_a_config(section):
    params = yaml.safe_load((REPO / "params.yaml").read_text())["train"]["vaegan"]
    if section == "tiny":
        params = {**params, **TINY["train"]["vaegan"]}
    values = {key: value for key, value in params.items() if key not in LOOP_KEYS}
    VAEGAN(from_dict(Config, values, "train.vaegan", fixed={**DATA, "image_size": 32}))


@pytest.mark.parametrize("conditional", [False, True])
def test_train_step_updates_all_three_networks(conditional):
    torch.manual_seed(0)
    model = VAEGAN(tiny_config(conditional=conditional))
    images, labels = batch()
    before = copy.deepcopy(model.state_dict())
    losses = model.train_step(images, labels)
    expected = {"reconstruction", "kl", "feature", "g_loss", "d_loss", "d_real", "d_fake"}
    assert set(losses) == expected
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    for name in ("encoder", "decoder", "discriminator"):
        changed = [
            not torch.equal(before[key], value)
            for key, value in model.state_dict().items()
            if key.startswith(name) and value.is_floating_point()
        ]
        assert any(changed), f"{name} did not change"


def test_adversarial_start_trains_the_vae_alone_then_adds_the_discriminator():
    torch.manual_seed(0)
    model = VAEGAN(tiny_config(adversarial_start=2))
    images, labels = batch()
    untouched = copy.deepcopy(model.discriminator.state_dict())
    for _ in range(2):
        assert set(model.train_step(images, labels)) == {"reconstruction", "kl"}
    assert all(torch.equal(untouched[k], v) for k, v in model.discriminator.state_dict().items())
    assert "d_loss" in model.train_step(images, labels)
    assert int(model.steps_done) == 3
    after = model.discriminator.state_dict()
    assert any(not torch.equal(untouched[k], v) for k, v in after.items())


def test_encoder_gets_no_adversarial_gradient():
    """Larsen et al.: the GAN term trains the decoder, not the encoder. With the same start and
    noise, the adversarial weight changes the decoder's update and leaves the encoder's alone."""
    images, labels = batch()
    models = []
    for weight in (0.0, 5.0):
        torch.manual_seed(0)
        model = VAEGAN(tiny_config(adversarial_weight=weight))
        model.train_step(images, labels)
        models.append(model)
    first, second = (m.state_dict() for m in models)
    for key in first:
        if key.startswith("encoder"):
            assert torch.equal(first[key], second[key]), key
    assert any(not torch.equal(first[k], second[k]) for k in first if k.startswith("decoder"))


def halves(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose left, right or top half is bright (by class): easy to encode in 4 numbers."""
    images = torch.full((count, 1, 16, 16), 0.1)
    for index in range(count):
        bright = [images[index, :, :, :8], images[index, :, :, 8:], images[index, :, :8, :]]
        bright[index % 3].fill_(0.9)
    return images, torch.arange(count) % 3


def test_training_improves_reconstructions():
    torch.manual_seed(0)
    model = VAEGAN(tiny_config(learning_rate=3e-3))
    images, labels = halves(32)
    model.eval()
    before = (model.reconstruct(images) - images).abs().mean()
    model.train()
    for _ in range(40):
        model.train_step(images, labels)
    model.eval()
    after = (model.reconstruct(images) - images).abs().mean()
    assert after < 0.6 * before


@pytest.mark.parametrize("conditional", [False, True])
def test_sample_encode_decode_reconstruct_shapes(conditional):
    torch.manual_seed(0)
    model = VAEGAN(tiny_config(conditional=conditional)).eval()
    images, labels = batch(6)
    samples = model.sample(6, rng=torch.Generator().manual_seed(0))
    assert samples.shape == (6, 1, 16, 16)
    assert samples.min() >= 0 and samples.max() <= 1
    assert torch.equal(samples, model.sample(6, rng=torch.Generator().manual_seed(0)))
    assert model.latent_shape == (4,) and model.latent_dim == 4
    latents = model.encode(images, labels if conditional else None)
    assert latents.shape == (6, 4)
    rebuilt = model.reconstruct(images, labels if conditional else None)
    assert rebuilt.shape == images.shape and rebuilt.min() >= 0 and rebuilt.max() <= 1
    assert torch.equal(rebuilt, model.decode(latents, labels if conditional else None))


def test_conditional_samples_follow_the_labels():
    torch.manual_seed(0)
    model = VAEGAN(tiny_config(conditional=True)).eval()
    zero = model.sample(4, torch.zeros(4, dtype=torch.long), torch.Generator().manual_seed(0))
    one = model.sample(4, torch.ones(4, dtype=torch.long), torch.Generator().manual_seed(0))
    assert (zero - one).abs().mean() > 1e-4
    with pytest.raises(ValueError, match="labels in 0..2"):
        model.train_step(*batch(4)[:1], torch.tensor([0, -1, 1, 2]))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = VAEGAN(tiny_config(conditional=True))
    model.train_step(*batch())
    model.eval()
    expected = model.sample(3, rng=torch.Generator().manual_seed(1))
    path = tmp_path / "model.pt"
    payload = {"family": "vaegan", "config": config_dict(model.config), "model": model.state_dict()}
    save_checkpoint(path, payload)
    loaded, _ = load_model(path)
    assert torch.equal(loaded.sample(3, rng=torch.Generator().manual_seed(1)), expected)


@pytest.mark.parametrize(
    ("values", "fixed", "key"),
    [
        ({}, {"image_size": 24}, "train.vaegan"),
        ({"conditional": True}, {"num_classes": 0}, "train.vaegan.conditional"),
        ({"feature_weight": -1.0}, {}, "train.vaegan.feature_weight"),
        ({"adversarial_weight": "high"}, {}, "train.vaegan.adversarial_weight"),
        ({"loss": "hinge"}, {}, "train.vaegan.loss"),
    ],
)
def test_bad_params_name_the_key(values, fixed, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        from_dict(Config, values, "train.vaegan", fixed={**DATA, **fixed})


def test_spectral_norm_bounds_every_discriminator_layer():
    torch.manual_seed(0)
    model = VAEGAN(tiny_config(spectral_norm=True, conditional=True))
    images, labels = batch()
    for _ in range(10):  # each training step runs power iterations in D's forwards
        model.train_step(images, labels)
    layers = [
        m
        for m in model.discriminator.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    assert layers and all(hasattr(layer, "parametrizations") for layer in layers)
    for layer in layers:
        matrix = layer.weight.flatten(1)
        assert torch.linalg.matrix_norm(matrix, ord=2).item() == pytest.approx(1.0, abs=0.1)
    plain = VAEGAN(tiny_config())
    assert not any(hasattr(m, "parametrizations") for m in plain.discriminator.modules())
