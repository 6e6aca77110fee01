"""The ddpm family (aigc/models/ddpm.py, aigc/models/unet.py) on tiny configs and images."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, TINY, random_images

from aigc.checkpoint import config_dict, load_model, save_checkpoint
from aigc.models import MODELS
from aigc.models.ddpm import DDPM, Config
from aigc.params import ParamsError, from_dict
from aigc.sampling import interpolation

LOOP_KEYS = ("epochs", "steps", "batch_size", "ema_decay")
DATA = {"image_size": 16, "channels": 1, "num_classes": 3}


def tiny_config(**overrides) -> Config:
    values = {
        "width": 8,
        "channel_multipliers": (1, 2),
        "attention_resolutions": (8,),
        "norm_groups": 4,
        "timesteps": 20,
        "learning_rate": 1e-3,
        **overrides,
    }
    return Config(**{**DATA, **values})


def batch(count: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(random_images(count, size=16, seed=seed)).float() / 255
    return images, torch.arange(count) % 3


def perturb_zero_layers(model: DDPM) -> None:
    """Give every weight a random value, so that zero-initialised layers (which make a fresh
    U-Net ignore its label) do not hide what the network computes."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.unet.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))


def test_registered():
    assert MODELS["ddpm"] is DDPM


@pytest.mark.parametrize("section", ["repo", "tiny"])
def test_params_sections_build_a_config(section):
    params = yaml.safe_load((REPO / "params.yaml").read_text())["train"]["ddpm"]
    if section == "tiny":
        params = {**params, **TINY["train"]["ddpm"]}
    values = {key: value for key, value in params.items() if key not in LOOP_KEYS}
    size = TINY["data"]["image_size"] if section == "tiny" else 32
    config = from_dict(Config, values, "train.ddpm", fixed={**DATA, "image_size": size})
    DDPM(config)  # builds


@pytest.mark.parametrize(("prediction", "min_snr_gamma"), [("eps", 0.0), ("v", 5.0)])
def test_both_predictions_train_and_the_loss_falls(prediction, min_snr_gamma):
    torch.manual_seed(0)
    model = DDPM(tiny_config(prediction=prediction, min_snr_gamma=min_snr_gamma))
    images, labels = batch(16)
    before = [p.detach().clone() for p in model.unet.parameters()]
    losses = [model.train_step(images, labels)["loss"] for _ in range(40)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.unet.parameters(), strict=True))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmpp_2m"])
@pytest.mark.parametrize("conditional", [False, True])
def test_samples_have_the_image_shape_and_range(sampler, conditional):
    torch.manual_seed(0)
    model = DDPM(tiny_config(conditional=conditional, patch_size=2, attention_resolutions=()))
    perturb_zero_layers(model)
    model.configure_sampling(sampler, steps=4, eta=0.5, guidance_scale=2.0)
    samples = model.sample(5, rng=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 16, 16)
    assert samples.min() >= 0 and samples.max() <= 1
    assert samples.std() > 0.01
    again = model.sample(5, rng=torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)  # a seeded generator fixes the samples


def test_cross_attention_carries_the_label():
    torch.manual_seed(0)
    model = DDPM(tiny_config(conditional=True))
    perturb_zero_layers(model)
    x = torch.randn(3, 1, 16, 16).repeat(2, 1, 1, 1)
    t = torch.full((6,), 7)
    labels = torch.tensor([0, 1, 2, 3, 3, 3])  # 3 = the null class
    with torch.no_grad():
        outputs = model.unet(x, t, labels)
        assert (outputs[:3] - outputs[3:]).abs().mean() > 1e-3  # the label changes the output
        cross = [
            m for name, m in model.unet.named_modules() if "cross" in name and hasattr(m, "out")
        ]
        assert len(cross) == 4  # after each block at side 8 (1 down, 2 up) and in the middle
        for block in cross:  # without cross-attention the label has no way in
            block.out.weight.zero_()
            block.out.bias.zero_()
        outputs = model.unet(x, t, labels)
    assert torch.allclose(outputs[:3], outputs[3:], atol=1e-6)


def test_conditional_samples_follow_the_labels():
    torch.manual_seed(0)
    model = DDPM(tiny_config(conditional=True))
    perturb_zero_layers(model)
    model.configure_sampling("ddim", steps=3)
    first = model.sample(4, torch.zeros(4, dtype=torch.long), torch.Generator().manual_seed(0))
    second = model.sample(4, torch.ones(4, dtype=torch.long), torch.Generator().manual_seed(0))
    assert (first - second).abs().mean() > 1e-3


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_guidance_scale_0_and_1_give_the_unconditional_and_conditional_output(prediction):
    torch.manual_seed(0)
    model = DDPM(tiny_config(conditional=True, prediction=prediction))
    perturb_zero_layers(model)
    x, t = torch.randn(4, 1, 16, 16), torch.tensor([0, 5, 10, 19])
    labels, null = torch.tensor([0, 1, 2, 0]), torch.full((4,), 3)
    with torch.no_grad():
        conditional, unconditional = model.unet(x, t, labels), model.unet(x, t, null)
        assert (conditional - unconditional).abs().mean() > 1e-3
        model.configure_sampling(steps=5, guidance_scale=0.0)
        assert torch.equal(model.denoiser(labels)(x, t), unconditional)
        model.configure_sampling(steps=5, guidance_scale=1.0)
        assert torch.equal(model.denoiser(labels)(x, t), conditional)
        model.configure_sampling(steps=5, guidance_scale=3.0)
        guided = model.denoiser(labels)(x, t)
    assert torch.allclose(guided, unconditional + 3 * (conditional - unconditional), atol=1e-4)


def test_conditional_training_takes_unlabelled_items():
    torch.manual_seed(0)
    model = DDPM(tiny_config(conditional=True))
    images, _ = batch(4)
    loss = model.train_step(images, torch.tensor([0, -1, 2, -1]))["loss"]
    assert loss == loss and loss < float("inf")  # finite: -1 trains the null class
    with pytest.raises(ValueError, match="labels in 0..2"):
        model.train_step(images, torch.tensor([0, 1, 2, 3]))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = DDPM(tiny_config(conditional=True, prediction="v", schedule="linear"))
    perturb_zero_layers(model)
    model.configure_sampling("ddim", steps=3)
    expected = model.sample(3, rng=torch.Generator().manual_seed(1))
    assert not any("schedule" in key for key in model.state_dict())  # derived, not stored
    path = tmp_path / "model.pt"
    save_checkpoint(
        path,
        {
            "family": "ddpm",
            "config": config_dict(model.config),
            "model": model.state_dict(),
            "ema": None,
        },
    )
    loaded, _ = load_model(path)
    assert loaded.config == model.config
    loaded.configure_sampling("ddim", steps=3)
    assert torch.equal(loaded.sample(3, rng=torch.Generator().manual_seed(1)), expected)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"attention_resolutions": (5,)}, "train.ddpm.attention_resolutions"),
        ({"attention_resolutions": (16,), "patch_size": 2}, "train.ddpm.attention_resolutions"),
        ({"width": 12, "norm_groups": 8}, "train.ddpm.width"),
        ({"width": 8, "norm_groups": 3}, "train.ddpm.norm_groups"),
        ({"channel_multipliers": (1, 2, 2, 2, 2, 2)}, "train.ddpm.channel_multipliers"),
        ({"patch_size": 3}, "train.ddpm.patch_size"),
        ({"conditional": True, "num_classes": 0}, "train.ddpm.conditional"),
        ({"schedule": "quadratic"}, "train.ddpm.schedule"),
        ({"prediction": "x0"}, "train.ddpm.prediction"),
    ],
)
def test_bad_params_name_the_key(overrides, key):
    values = {"width": 8, "channel_multipliers": [1, 2], "attention_resolutions": [8], **overrides}
    fixed = {**DATA, "num_classes": values.pop("num_classes", 3)}
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        from_dict(Config, values, "train.ddpm", fixed=fixed)


def test_bad_sampling_settings_name_the_key():
    model = DDPM(tiny_config())
    with pytest.raises(ParamsError, match=r"sample\.sampler"):
        model.configure_sampling("euler")
    with pytest.raises(ParamsError, match=r"sample\.steps"):
        model.configure_sampling("ddim", steps=21)


def test_config_is_frozen_and_keeps_tuples():
    config = Config(**{**DATA, "channel_multipliers": [1, 2], "attention_resolutions": [8]})
    assert config.channel_multipliers == (1, 2) and config.attention_resolutions == (8,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.width = 4  # type: ignore[misc]


def test_decode_is_the_deterministic_sampler_so_interpolation_walks_noise_space():
    torch.manual_seed(0)
    model = DDPM(tiny_config()).eval()
    perturb_zero_layers(model)
    model.configure_sampling(sampler="ddim", steps=5, eta=0.0)
    noise = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(4))
    sampled = model.sample(3, rng=torch.Generator().manual_seed(4))
    torch.testing.assert_close(model.decode(noise), sampled)
    strip = interpolation(model, rows=2, steps=4, seed=1)
    assert strip.shape == (8, 1, 16, 16) and strip.dtype == np.uint8
    # Neighbouring images along a row are closer than the two ends of it.
    row = strip[:4].astype(float)
    assert np.abs(row[1] - row[0]).mean() < np.abs(row[3] - row[0]).mean()
