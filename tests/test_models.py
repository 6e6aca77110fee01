"""The gan, dcgan and vae families and the shared layers: shapes, ranges, losses, options.

GAN losses are checked against their formulas written out by hand; the families are checked
on tiny random batches (a few steps must run with finite named losses; the VAE's loss must
fall on a trivial data set).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aigc.models import MODELS
from aigc.models.layers import (
    ClassProjection,
    ConditionalBatchNorm,
    GaussianMixture,
    SelfAttention2d,
    count_parameters,
    diff_augment,
    discriminator_loss,
    generator_loss,
    one_hot_maps,
    r1_penalty,
    with_spectral_norm,
)
from aigc.params import ParamsError, load_section

FAMILIES = ["gan", "dcgan", "vae"]
TINY = {
    "gan": {"latent_dim": 8, "width": 16, "discriminator_width": 8},
    "dcgan": {"latent_dim": 8, "width": 8},
    "vae": {"latent_dim": 4, "width": 8},
}


def make(family: str, size: int = 16, channels: int = 1, classes: int = 3, **options):
    torch.manual_seed(0)
    config = MODELS[family].Config(
        image_size=size, channels=channels, num_classes=classes, **{**TINY[family], **options}
    )
    return MODELS[family](config)


def batch(count: int = 8, channels: int = 1, size: int = 16, classes: int = 3):
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(count, channels, size, size, generator=generator)
    return images, torch.arange(count) % classes


# -- layers ------------------------------------------------------------------------------------


def test_gan_losses_match_their_formulas():
    real = torch.tensor([2.0, -1.0, 0.5])
    fake = torch.tensor([-3.0, 0.0, 1.5])
    sigmoid = torch.sigmoid
    expected_d = (-torch.log(sigmoid(real))).mean() + (-torch.log(1 - sigmoid(fake))).mean()
    assert discriminator_loss(real, fake, "bce").item() == pytest.approx(expected_d.item(), 1e-6)
    smooth = 0.1  # targets 0.9: -(0.9 log s + 0.1 log(1 - s))
    expected_smooth = (
        -(0.9 * torch.log(sigmoid(real)) + 0.1 * torch.log(1 - sigmoid(real)))
    ).mean() + (-torch.log(1 - sigmoid(fake))).mean()
    assert discriminator_loss(real, fake, "bce", smooth).item() == pytest.approx(
        expected_smooth.item(), 1e-6
    )
    # Non-saturating generator loss: -log D(G(z)), not log(1 - D(G(z))).
    expected_g = (-torch.log(sigmoid(fake))).mean()
    assert generator_loss(fake, "bce").item() == pytest.approx(expected_g.item(), 1e-6)
    hinge_d = (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()).item()
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(hinge_d, 1e-6)
    assert generator_loss(fake, "hinge").item() == pytest.approx(-fake.mean().item(), 1e-6)
    with pytest.raises(ValueError, match="wgan"):
        generator_loss(fake, "wgan")


def test_r1_penalty_is_half_gamma_times_the_squared_input_gradient():
    # D(x) = sum_i w_i x_i^2 has gradient 2 w x, so the penalty is gamma/2 mean ||2 w x||^2.
    weights = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    real = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], requires_grad=True)
    logits = (weights * real**2).sum(1)
    penalty = r1_penalty(logits, real, 4.0)
    expected = 4.0 / 2 * (2 * weights * real).pow(2).sum(1).mean()
    assert penalty.item() == pytest.approx(expected.item(), 1e-6)
    # It is differentiable in D's weights (create_graph), which is what trains D.
    (gradient,) = torch.autograd.grad(penalty, weights)
    (reference,) = torch.autograd.grad(expected, weights)
    torch.testing.assert_close(gradient, reference)
    assert r1_penalty(logits, real, 0.0).item() == 0.0


@pytest.mark.parametrize("family", ["gan", "dcgan"])
def test_r1_changes_the_discriminator_step_and_is_refused_under_dp_sgd(family):
    images, labels = batch(8)
    updated = {}
    for gamma in (0.0, 10.0):
        model = make(family, r1_gamma=gamma)
        losses = model.train_step(images, labels)
        assert all(math.isfinite(value) for value in losses.values())
        updated[gamma] = [p.detach().clone() for p in model.discriminator.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(updated[0.0], updated[10.0], strict=True))
    with pytest.raises(
        ParamsError, match=rf"train.{family}.r1_gamma = 1.0: .*allowed with privacy: 0"
    ):
        make(family, r1_gamma=1.0, privacy={"epsilon": 3.0})


def test_self_attention_starts_as_identity_and_mixes_positions_once_gamma_moves():
    torch.manual_seed(0)
    block = SelfAttention2d(16)
    x = torch.randn(2, 16, 4, 4)
    assert torch.equal(block(x), x)  # gamma = 0 at initialisation
    block.gamma.data.fill_(1.0)
    y = block(x)
    # Reference: softmax over positions of q^T k (no scaling, as SAGAN), values summed.
    q = block.query(x).flatten(2)  # (B, C', N)
    k = block.key(x).flatten(2)
    v = block.value(x).flatten(2)  # (B, C, N)
    weights = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N query, N key)
    expected = x + (v @ weights.transpose(1, 2)).view_as(x)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)


def test_spectral_norm_switch_bounds_the_largest_singular_value():
    torch.manual_seed(0)
    layer = with_spectral_norm(torch.nn.Linear(6, 5), True)
    for _ in range(20):  # power iterations run in training-mode forwards
        layer(torch.randn(1, 6))
    assert torch.linalg.matrix_norm(layer.weight, ord=2).item() == pytest.approx(1.0, abs=0.05)
    plain = with_spectral_norm(torch.nn.Linear(6, 5), False)
    assert not hasattr(plain, "parametrizations")


def test_conditioning_helpers_and_parameter_count():
    maps = one_hot_maps(torch.tensor([2, 0]), 3, 4, 5)
    assert maps.shape == (2, 3, 4, 5)
    assert maps[0, 2].eq(1).all() and maps[0, :2].eq(0).all() and maps[1, 0].eq(1).all()
    projection = ClassProjection(3, 4)
    features = torch.randn(2, 4)
    labels = torch.tensor([1, 2])
    expected = (projection.embedding.weight[labels] * features).sum(1)
    torch.testing.assert_close(projection(features, labels), expected)
    assert count_parameters(torch.nn.Linear(3, 4)) == 3 * 4 + 4


# -- families ----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("conditional", [False, True])
def test_family_steps_and_samples(family, conditional):
    model = make(family, conditional=conditional)
    images, labels = batch()
    for _ in range(2):
        losses = model.train_step(images, labels)
    assert losses and all(isinstance(v, float) and math.isfinite(v) for v in losses.values())
    model.eval()
    samples = model.sample(5, rng=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 16, 16)
    assert samples.min() >= 0 and samples.max() <= 1
    again = model.sample(5, rng=torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)
    if conditional:  # the labels reach the generator: same noise, other class, other image
        zeros = model.sample(4, torch.zeros(4, dtype=torch.long), torch.Generator().manual_seed(0))
        twos = model.sample(4, torch.full((4,), 2), torch.Generator().manual_seed(0))
        assert zeros.shape == twos.shape == (4, 1, 16, 16)
        assert not torch.equal(zeros, twos)
        with pytest.raises(ValueError, match="labels in 0..2"):
            model.sample(2, torch.tensor([0, 3]))


def test_vae_loss_falls_on_a_trivial_data_set_and_it_reconstructs():
    model = make("vae", warmup_steps=0, learning_rate=3e-3)
    images = torch.zeros(16, 1, 16, 16)
    images[:, :, 4:12, 4:12] = 1.0  # one white square, always
    labels = torch.zeros(16, dtype=torch.long)
    first = model.train_step(images, labels)["loss"]
    for _ in range(30):
        last = model.train_step(images, labels)["loss"]
    assert last < 0.5 * first
    model.eval()
    assert model.encodes and model.latent_dim == 4
    assert model.encode(images[:2]).shape == (2, 4)
    rebuilt = model.reconstruct(images[:2])
    assert rebuilt.shape == (2, 1, 16, 16)
    assert (rebuilt - images[:2]).abs().mean() < 0.3


def test_vae_kl_weight_warms_up_linearly():
    model = make("vae", warmup_steps=4, beta=2.0)
    images, labels = batch()
    weights = []
    for _ in range(6):
        weights.append(model.kl_weight())
        model.train_step(images, labels)
    assert weights == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_sizes_and_channels(size, channels):
    model = make("dcgan", size=size, channels=channels)
    images, labels = batch(4, channels, size)
    assert all(math.isfinite(v) for v in model.train_step(images, labels).values())
    assert model.eval().sample(2).shape == (2, channels, size, size)


@pytest.mark.parametrize("size", [8, 24, 48])
def test_dcgan_bad_image_size_is_a_clear_error(size):
    with pytest.raises(ParamsError, match=rf"image_size = {size} .*power of two >= 16"):
        make("dcgan", size=size)


def test_dcgan_attention_spectral_norm_and_hinge_construct_and_step():
    model = make(
        "dcgan", size=32, attention_resolution=8, spectral_norm=True, loss="hinge", conditional=True
    )
    attention = [m for m in model.modules() if isinstance(m, SelfAttention2d)]
    assert len(attention) == 2  # one in G, one in D
    assert any(hasattr(m, "parametrizations") for m in model.discriminator.modules())
    images, labels = batch(4, 1, 32)
    for _ in range(2):
        losses = model.train_step(images, labels)
    assert all(math.isfinite(v) for v in losses.values())
    # The SAGAN gammas learned something (they start at exactly 0).
    assert all(block.gamma.item() != 0.0 for block in attention)
    with pytest.raises(ParamsError, match="train.dcgan.attention_resolution = 5"):
        make("dcgan", size=32, attention_resolution=5)


def test_conditional_without_classes_is_a_clear_error():
    for family in FAMILIES:
        with pytest.raises(ParamsError, match=rf"train.{family}.conditional"):
            make(family, classes=0, conditional=True)


# -- DiffAugment and TTUR ----------------------------------------------------------------------


def test_diff_augment_moves_pixels_as_documented_and_passes_gradients():
    images = torch.linspace(-1, 1, 2 * 16 * 16).view(2, 1, 16, 16).requires_grad_()
    assert torch.equal(diff_augment(images, ()), images)

    torch.manual_seed(0)
    shifted = diff_augment(images, ("translation",))
    assert shifted.shape == images.shape
    for out, source in zip(shifted, images.detach(), strict=True):
        # Every output pixel is a source pixel from a shift of at most 16/8 = 2, or the fill 0.
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(out[0, 2:-2, 2:-2], source[0, 2 + dy : 14 + dy, 2 + dx : 14 + dx])
        ]
        assert len(matches) == 1

    torch.manual_seed(0)
    cut = diff_augment(images, ("cutout",))
    zeroed = (cut == 0) & (images != 0)
    assert zeroed.sum(dim=(1, 2, 3)).tolist() == [64, 64]  # one 8x8 square (half the side)

    torch.manual_seed(0)
    coloured = diff_augment(images, ("color",))
    (coloured.sum() + shifted.sum() + cut.sum()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert not torch.allclose(coloured, images)


def test_gan_options_diff_augment_and_ttur_reach_the_model():
    model = make("dcgan", diff_augment=("translation", "cutout"), discriminator_learning_rate=4e-4)
    assert model.optimizers["discriminator"].param_groups[0]["lr"] == 4e-4
    assert model.optimizers["generator"].param_groups[0]["lr"] == model.config.learning_rate
    images, labels = batch()
    losses = model.train_step(images, labels)
    assert all(math.isfinite(v) for v in losses.values())
    plain = make("gan")
    assert plain.optimizers["discriminator"].param_groups[0]["lr"] == plain.config.learning_rate


def test_unknown_diff_augment_policy_is_a_clear_error(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  dcgan:\n    diff_augment: [translation, blur]\n")
    with pytest.raises(ParamsError, match=r"diff_augment\[1\] = 'blur' is not allowed"):
        fixed = {"image_size": 16, "channels": 1, "num_classes": 3}
        load_section(params, "train.dcgan", MODELS["dcgan"].Config, fixed)


def test_conditional_batch_norm_normalises_then_scales_and_shifts_per_class():
    norm = ConditionalBatchNorm(3, num_classes=2)
    with torch.no_grad():
        norm.scale.weight[1] = torch.tensor([2.0, 2.0, 2.0])
        norm.shift.weight[1] = torch.tensor([1.0, 1.0, 1.0])
    x = torch.randn(8, 3, 4, 4) * 5 + 3
    labels = torch.tensor([0, 1] * 4)
    out = norm(x, labels)
    plain = F.batch_norm(x, None, None, training=True, eps=norm.norm.eps)
    assert torch.allclose(out[labels == 0], plain[labels == 0], atol=1e-5)
    assert torch.allclose(out[labels == 1], plain[labels == 1] * 2 + 1, atol=1e-5)
    flat = ConditionalBatchNorm(5, num_classes=2, dims=1)
    assert flat(torch.randn(4, 5), torch.tensor([0, 1, 0, 1])).shape == (4, 5)


@pytest.mark.parametrize("family", ["gan", "dcgan"])
def test_conditional_generators_take_the_label_in_batch_norm_only(family):
    model = make(family, conditional=True)
    norms = [m for m in model.generator.modules() if isinstance(m, ConditionalBatchNorm)]
    plain = [m for m in model.generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(not m.affine for m in plain)  # every batch norm is a conditional one
    first = model.generator.net[0]  # z alone enters the first layer (latent_dim 8 in TINY)
    assert (first.in_channels if family == "dcgan" else first.in_features) == 8
    # The projection starts at the linear head's scale, not nn.Embedding's N(0, 1).
    assert model.discriminator.projection.embedding.weight.std() < 0.05


def test_minibatch_std_lets_the_gan_discriminator_see_a_collapsed_batch():
    model = make("gan", minibatch_std=True)
    discriminator = model.discriminator.eval()
    assert discriminator.head.in_features == 4 * 8 * (16 // 8) ** 2 + 1  # features + spread
    with torch.no_grad():
        discriminator.head.weight.zero_()
        discriminator.head.bias.zero_()
        discriminator.head.weight[0, -1] = 1.0  # the head reads the spread alone
        images, _ = batch()
        varied = discriminator(images * 2 - 1)
        collapsed = discriminator(images[:1].expand(8, -1, -1, -1) * 2 - 1)
    assert torch.all(collapsed == collapsed[0]) and abs(collapsed[0].item()) < 1e-6
    assert torch.all(varied > 0)  # the same logit for all, the batch's (positive) spread


def test_gaussian_mixture_recovers_two_clusters_and_its_density_is_the_textbook_one():
    generator = torch.Generator().manual_seed(0)
    wide = torch.randn(3000, 2, generator=generator) * 0.5 + torch.tensor([3.0, 0.0])
    shear = torch.tensor([[1.0, 0.5], [0.0, 0.3]])
    narrow = torch.randn(1000, 2, generator=generator) @ shear + torch.tensor([-2.0, 1.0])
    mixture = GaussianMixture(2, 2)
    assert not bool(mixture.fitted)  # N(0, I) until fitted
    assert mixture.sample(4, torch.Generator().manual_seed(1)).shape == (4, 2)
    mean_log_likelihood = mixture.fit(torch.cat([wide, narrow]))
    order = mixture.means[:, 0].argsort(descending=True)  # the wide cluster first
    assert torch.allclose(mixture.weights[order], torch.tensor([0.75, 0.25]), atol=0.01)
    assert torch.allclose(mixture.means[order], torch.tensor([[3.0, 0.0], [-2.0, 1.0]]), atol=0.1)
    covariance = mixture.scale_tril[order[1]] @ mixture.scale_tril[order[1]].T
    assert torch.allclose(covariance, shear.T @ shear, atol=0.1)
    # log p(z) against torch.distributions' mixture of the same parameters.
    points = torch.cat([wide, narrow]).double()
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(mixture.weights.double()),
        torch.distributions.MultivariateNormal(
            mixture.means.double(), scale_tril=mixture.scale_tril.double()
        ),
    )
    assert torch.allclose(mixture.log_prob(points), reference.log_prob(points), atol=1e-5)
    assert mean_log_likelihood == pytest.approx(float(reference.log_prob(points).mean()), abs=1e-3)
    # Draws: reproducible from a seed, and distributed as the mixture.
    first = mixture.sample(20000, torch.Generator().manual_seed(2))
    assert torch.equal(first, mixture.sample(20000, torch.Generator().manual_seed(2)))
    assert (first[:, 0] > 0.5).float().mean() == pytest.approx(0.75, abs=0.02)


def test_the_mixture_prior_is_refused_under_dp_sgd_naming_the_key():
    with pytest.raises(
        ParamsError, match=r"train.vae.prior_components = 10: .*allowed with privacy: 0"
    ):
        make("vae", prior_components=10, privacy={"epsilon": 3.0})


def test_pacgan_judges_runs_of_images_as_one_input_and_scores_one_image_as_copies():
    from aigc.models.gan import pack

    images, labels = batch(8)
    packed = pack(images, 2)  # images 2i and 2i + 1 side by side as channels
    assert torch.equal(packed, torch.cat([images[0::2], images[1::2]], dim=1))
    model = make("gan", packing=2, minibatch_std=True)
    assert model.discriminator.features[0].in_channels == 2
    assert model.discriminate(images * 2 - 1, None).shape == (4,)
    losses = model.train_step(images, labels)
    assert all(math.isfinite(value) for value in losses.values())
    model.eval()
    scores = model.membership_scores(images)
    expected = model.discriminator(images.repeat_interleave(2, dim=0) * 2 - 1)
    assert scores.shape == (8,) and torch.allclose(scores, expected)
    with pytest.raises(ValueError, match="must be a multiple of train.gan.packing"):
        model.train_step(images[:7], labels[:7])


def test_pacgan_batch_size_is_checked_before_training_and_it_takes_labels(tmp_path):
    from conftest import write_params

    from aigc.imagesets import ImageSet
    from aigc.training import read_train_params

    pixels = np.zeros((64, 1, 16, 16), dtype=np.uint8)
    images = ImageSet(pixels, np.arange(64) % 2, ["a", "b"])
    params = write_params(tmp_path, {"train": {"gan": {"batch_size": 63, "packing": 2}}})
    with pytest.raises(ParamsError, match=r"train.gan.batch_size = 63 .*allowed: a multiple of 2"):
        read_train_params(params, "gan", images)
    # Conditional: D's class term is the pack's class embeddings averaged, and it trains.
    projection = ClassProjection(3, 6)
    features, labels = torch.randn(4, 6), torch.tensor([0, 0, 1, 2, 2, 2, 1, 0])
    weight = projection.embedding.weight
    mean = (weight[labels[0::2]] + weight[labels[1::2]]) / 2
    expected = (mean * features).sum(1)
    assert torch.allclose(projection(features, labels, group=2), expected)
    conditional = make("gan", packing=2, conditional=True)
    losses = conditional.train_step(*batch(8))
    assert all(math.isfinite(value) for value in losses.values())
    conditional.eval()
    assert conditional.membership_scores(*batch(8)).shape == (8,)
