"""DP-SGD (aigc/privacy.py): the accountant against Opacus's published values, per-sample
clipping against an independent per-image computation, the GroupNorm swap and its refusal,
Poisson batches of originals, and the params that DP-SGD cannot honour."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import image_set, write_params

from aigc.imagesets import ImageSet
from aigc.models import MODELS
from aigc.params import ParamsError
from aigc.privacy import PrivacyConfig, PrivateTraining, epsilon_spent
from aigc.training import Batches, read_train_params, train


def config_of(family: str, **fields):
    """A 16x16, 5-class Config of `family` with `fields` set (privacy given as a dict)."""
    if isinstance(fields.get("privacy"), dict):
        fields["privacy"] = PrivacyConfig(**fields["privacy"])
    return MODELS[family].Config(image_size=16, channels=1, num_classes=5, **fields)


class World:
    rank, size, main = 0, 1, True


# -- the accountant -------------------------------------------------------------------------------


def test_epsilon_matches_the_values_opacus_publishes_for_its_accountants():
    # Opacus's own accountant tests: sigma 1.5, q 0.04, 90 epochs (2250 steps), delta 1e-5.
    assert epsilon_spent(1.5, 0.04, 2250, 1e-5, "rdp") == pytest.approx(7.329, abs=0.01)
    assert epsilon_spent(1.5, 0.04, 2250, 1e-5, "prv") == pytest.approx(6.777, abs=0.01)


def test_epsilon_grows_with_steps_and_shrinks_with_noise():
    assert epsilon_spent(1.0, 0.01, 100, 1e-5) < epsilon_spent(1.0, 0.01, 1000, 1e-5)
    assert epsilon_spent(2.0, 0.01, 1000, 1e-5) < epsilon_spent(1.0, 0.01, 1000, 1e-5)


@pytest.mark.parametrize("target", [1.0, 3.0, 10.0])
def test_the_solved_noise_multiplier_spends_at_most_the_target(target):
    model = MODELS["vae"](config_of("vae", width=8, latent_dim=4, privacy={"epsilon": target}))
    private = PrivateTraining(model, model.config.privacy, 50_000, 64, 2000, "vae")
    spent = private.spent(2000)
    assert target - 0.05 <= spent <= target
    assert private.summary(2000)["privacy_noise_multiplier"] == private.noise_multiplier > 0


# -- per-sample clipping --------------------------------------------------------------------------


def test_each_images_gradient_is_clipped_to_the_bound_before_it_is_summed(monkeypatch):
    """With negligible noise, the DP step's gradient must equal the sum of every image's own
    gradient clipped to C, over the expected batch size: computed here one image at a time
    on an unwrapped twin of the model."""
    bound = 0.05
    monkeypatch.setattr("aigc.models.vae.reparameterise", lambda mu, logvar: mu)  # no noise in z
    privacy = {"noise_multiplier": 1e-9, "max_grad_norm": bound, "delta": 1e-3}
    config = config_of("vae", width=8, latent_dim=4, warmup_steps=0, privacy=privacy)
    torch.manual_seed(0)
    model = MODELS["vae"](config)
    twin = copy.deepcopy(model)
    PrivateTraining(model, config.privacy, 100, 4, 10, "vae")
    images = torch.from_numpy(image_set(4, seed=5).images).float() / 255
    labels = torch.zeros(4, dtype=torch.long)

    captured = {}
    inner = model.optimizers["vae"].original_optimizer
    monkeypatch.setattr(inner, "step", lambda *a, **k: captured.update(
        {name: p.grad.clone() for name, p in model.named_parameters()}))  # fmt: skip
    model.train_step(images, labels)

    twin.optimizers["vae"].step = lambda *a, **k: None  # keep each image's gradient
    clipped, norms = None, []
    for index in range(4):
        twin.train_step(images[index : index + 1], labels[:1])
        grads = {name: p.grad.clone() for name, p in twin.named_parameters()}
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
        norms.append(float(norm))
        scale = min(1.0, bound / (float(norm) + 1e-6))
        scaled = {name: g * scale for name, g in grads.items()}
        clipped = scaled if clipped is None else {n: clipped[n] + scaled[n] for n in scaled}
    assert min(norms) > 2 * bound  # every image's gradient is cut: the check can fail
    total = torch.sqrt(sum(g.pow(2).sum() for g in captured.values()))
    assert float(total) <= 4 * bound / 4 + 1e-6  # the sum of four clipped ones, over four
    for name, expected in clipped.items():
        torch.testing.assert_close(captured[name], expected / 4, rtol=1e-3, atol=1e-7)


# -- networks: GroupNorm under DP, refusals -------------------------------------------------------


def test_private_networks_are_built_with_group_norm_and_the_generator_keeps_batch_norm():
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    vae = MODELS["vae"](config_of("vae", width=8, latent_dim=4, privacy={"epsilon": 1.0}))
    assert not any(isinstance(m, norms) for m in vae.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in vae.modules())
    dcgan = MODELS["dcgan"](config_of("dcgan", width=8, latent_dim=4, privacy={"epsilon": 1.0}))
    assert not any(isinstance(m, norms) for m in dcgan.discriminator.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in dcgan.generator.modules())
    plain = MODELS["vae"](config_of("vae", width=8, latent_dim=4))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())


def private_params(tmp_path, family: str, section: dict):
    data = image_set(64, seed=1)
    params = write_params(tmp_path, {"train": {family: {"steps": 2, "batch_size": 8, **section}}})
    return params, data


def test_dp_training_refuses_batch_norm_when_the_swap_is_off(tmp_path):
    privacy = {"epsilon": 5.0, "delta": 1e-3, "replace_batch_norm": False}
    params, data = private_params(tmp_path, "vae", {"privacy": privacy, "prior_components": 0})
    common, loop, config, _ = read_train_params(params, "vae", data)
    with pytest.raises(ParamsError, match="replace_batch_norm") as error:
        train("vae", config, loop, common, data, out=tmp_path / "m.pt",
              live_dir=tmp_path / "live", resume_dir=tmp_path / "resume")  # fmt: skip
    assert "BatchNorm" in str(error.value) and not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    ("family", "privacy", "section", "message"),
    [
        ("vaegan", {"epsilon": 5.0}, {}, "vaegan cannot train with DP-SGD"),
        ("gan", {"epsilon": 5.0}, {"minibatch_std": True}, "minibatch_std = true mixes"),
        ("vae", {"epsilon": 5.0, "noise_multiplier": 1.0}, {"prior_components": 0}, "are both set"),
        ("vae", {"epsilon": 5.0}, {"prior_components": 10}, "prior_components = 10: the mixture"),
    ],
)
def test_params_that_dp_sgd_cannot_honour_are_refused_naming_the_key(
    tmp_path, family, privacy, section, message
):
    params, data = private_params(tmp_path, family, {"privacy": privacy, **section})
    with pytest.raises(ParamsError, match=message):
        read_train_params(params, family, data)


def test_a_delta_above_one_over_the_number_of_images_is_refused(tmp_path):
    section = {"privacy": {"epsilon": 5.0, "delta": 0.1}, "prior_components": 0}
    params, data = private_params(tmp_path, "vae", section)
    common, loop, config, _ = read_train_params(params, "vae", data)
    with pytest.raises(ParamsError, match=r"privacy.delta = 0.1 is out of range"):
        train("vae", config, loop, common, data, out=tmp_path / "m.pt",
              live_dir=tmp_path / "live", resume_dir=tmp_path / "resume")  # fmt: skip


# -- Poisson batches of originals -----------------------------------------------------------------


def augmented(count: int, copies: int) -> ImageSet:
    images = np.arange(count * (copies + 1), dtype=np.uint8).reshape(-1, 1, 1, 1)
    images = np.broadcast_to(images, (len(images), 1, 4, 4)).copy()
    origins = np.tile(np.arange(count), copies + 1)
    return ImageSet(images, np.zeros(len(images), dtype=np.int64), ["a"], origins=origins)


def test_poisson_batches_take_each_original_at_most_once_in_one_of_its_versions():
    data = augmented(2000, copies=1)
    batches = Batches(data, 50, seed=3, world=World(), device=torch.device("cpu"), poisson=True)
    assert batches.items == 2000 and batches.sample_rate == 50 / 2000
    sizes, versions = [], set()
    for step in range(200):
        rows = batches.poisson_rows(step)
        originals = data.origins[rows]
        assert len(set(originals.tolist())) == len(rows)  # no original twice in a step
        sizes.append(len(rows))
        versions.update((rows >= 2000).tolist())
    assert abs(np.mean(sizes) - 50) < 3 * np.sqrt(50 / 200)  # mean of 200 Binomial(2000, q)
    assert np.std(sizes) > 3  # the batch size varies, as Poisson sampling does
    assert versions == {False, True}  # originals and copies are both drawn
    again = Batches(data, 50, seed=3, world=World(), device=torch.device("cpu"), poisson=True)
    assert np.array_equal(again.poisson_rows(17), batches.poisson_rows(17))
    images, _ = batches.get(17)
    assert len(images) == len(batches.poisson_rows(17))
