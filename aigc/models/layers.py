"""Building blocks the model families share: GAN losses, self-attention, conditioning, sizes.

- `discriminator_loss` / `generator_loss`: the BCE GAN objective with the non-saturating
  generator loss (Goodfellow et al. 2014, https://arxiv.org/abs/1406.2661) or the hinge loss
  (Lim & Ye 2017, https://arxiv.org/abs/1705.02894; used by SAGAN).
- `SelfAttention2d`: the SAGAN block (Zhang et al. 2019, https://arxiv.org/abs/1805.08318).
- `with_spectral_norm`: the spectral-norm switch (Miyato et al. 2018,
  https://arxiv.org/abs/1802.05957).
- Class conditioning. GAN generators take the label through class-conditional batch norm
  (`ConditionalBatchNorm`: a learned scale and shift per class after normalisation, de Vries
  et al. 2017, as the generators of Miyato & Koyama 2018 and BigGAN); discriminators use the
  projection term `ClassProjection` (Miyato & Koyama 2018, https://arxiv.org/abs/1802.05637);
  VAE decoders take a one-hot label beside z and encoders one-hot label maps beside the image
  channels (`one_hot_maps`).
- `diff_augment`: differentiable augmentation of every image a discriminator sees, real and
  generated alike (DiffAugment, Zhao et al. 2020, https://arxiv.org/abs/2006.10738).
- `d_scores`: the discriminator's mean outputs, logged beside the GAN losses.
- `frozen`: a network that passes gradients to its inputs but not its weights (a GAN's D
  during the generator's update).
- `reparameterise`, `gaussian_kl`: the Gaussian latent of the VAEs (Kingma & Welling 2014).
- `GaussianMixture`: a full-covariance mixture fitted by EM to a VAE's training codes after
  training, the prior its samples are drawn from (ex-post density estimation, Ghosh et al.
  2020, https://arxiv.org/abs/1903.12436).
- `count_parameters`, `init_dcgan_weights` (N(0, 0.02), Radford et al. 2016).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from aigc.params import ParamsError

__all__ = [
    "GAN_LOSSES",
    "discriminator_loss",
    "generator_loss",
    "DIFF_AUGMENTATIONS",
    "diff_augment",
    "d_scores",
    "frozen",
    "reparameterise",
    "gaussian_kl",
    "GaussianMixture",
    "SelfAttention2d",
    "with_spectral_norm",
    "ClassProjection",
    "ConditionalBatchNorm",
    "batch_norm",
    "run_conditioned",
    "one_hot_maps",
    "default_labels",
    "check_labels",
    "sampling_labels",
    "count_parameters",
    "init_dcgan_weights",
]

GAN_LOSSES = ("bce", "hinge")


# ---------------------------------------------------------------------------------------------
# GAN losses. Logits are the discriminator's raw outputs, shape (B,).


def discriminator_loss(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    kind: str = "bce",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The discriminator's loss on a batch of real and a batch of generated images.

    bce:   -log D(x) - log(1 - D(G(z))), with real targets 1 - label_smoothing
           (one-sided smoothing, Salimans et al. 2016, https://arxiv.org/abs/1606.03498).
    hinge: max(0, 1 - D(x)) + max(0, 1 + D(G(z)))  (Lim & Ye 2017).
    """
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "bce":
        real_targets = torch.full_like(real_logits, 1.0 - label_smoothing)
        real_loss = F.binary_cross_entropy_with_logits(real_logits, real_targets)
        fake_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return real_loss + fake_loss
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    raise ValueError(f"unknown GAN loss {kind!r}; allowed: {', '.join(GAN_LOSSES)}")


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma / 2 E ||grad_x D(x)||^2 at real images x (Mescheder et al. 2018,
    https://arxiv.org/abs/1801.04406, eq. 9): it keeps D flat on the data, where the
    unregularised game circles instead of converging. `real` must require grad before D sees
    it; gamma = 0 gives 0 without a second backward."""
    if gamma == 0:
        return real_logits.new_zeros(())
    (gradient,) = torch.autograd.grad(real_logits.float().sum(), real, create_graph=True)
    return gamma / 2 * gradient.float().pow(2).flatten(1).sum(1).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """The generator's loss on the discriminator's logits for generated images.

    bce:   the non-saturating -log D(G(z)) (Goodfellow et al. 2014, section 3), which gives
           strong gradients early on where log(1 - D(G(z))) saturates.
    hinge: -D(G(z))  (Lim & Ye 2017; SAGAN).
    """
    fake_logits = fake_logits.float()
    if kind == "bce":
        return F.softplus(-fake_logits).mean()  # -log sigmoid(l) = softplus(-l)
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown GAN loss {kind!r}; allowed: {', '.join(GAN_LOSSES)}")


DIFF_AUGMENTATIONS = ("color", "translation", "cutout")


def diff_augment(images: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020, section 3): random transformations, differentiable in the
    images, applied to every batch the discriminator sees, real and generated, in D's update and
    in G's. D then never sees the same real image twice and cannot memorise the training set,
    while G still gets gradients through the transformation. The draws use torch's global RNG,
    so a seeded run repeats them.

    images (B, C, H, W) in [-1, 1]; policy: any of
      color        brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5)
      translation  a shift of up to 1/8 of the side per axis, zero (mid-grey) fill
      cutout       one square of half the side set to 0 at a random place
    (the paper's three, with its magnitudes).
    """
    for name in policy:
        images = _AUGMENTATIONS[name](images)
    return images


def _color(x: torch.Tensor) -> torch.Tensor:
    batch = len(x)
    x = x + (torch.rand(batch, 1, 1, 1, device=x.device) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(batch, 1, 1, 1, device=x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(batch, 1, 1, 1, device=x.device) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    batch, _, height, width = x.shape
    pad_y, pad_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-pad_y, pad_y + 1, (batch, 1), device=x.device)
    dx = torch.randint(-pad_x, pad_x + 1, (batch, 1), device=x.device)
    rows = torch.arange(height, device=x.device)[None] + pad_y + dy  # (B, H) in the padded map
    cols = torch.arange(width, device=x.device)[None] + pad_x + dx  # (B, W)
    padded = F.pad(x, [pad_x, pad_x, pad_y, pad_y])
    index = torch.arange(batch, device=x.device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B,H,W,C)
    return shifted.permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    batch, _, height, width = x.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    top = torch.randint(0, height - size_y + 1, (batch, 1, 1), device=x.device)
    left = torch.randint(0, width - size_x + 1, (batch, 1, 1), device=x.device)
    rows = torch.arange(height, device=x.device)[None, :, None]
    cols = torch.arange(width, device=x.device)[None, None, :]
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_AUGMENTATIONS = {"color": _color, "translation": _translation, "cutout": _cutout}


def d_scores(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, float]:
    """The discriminator's mean probabilities on real and generated images, for the logs: a
    balanced game keeps them apart but short of 1 and 0."""
    return {
        "d_real": torch.sigmoid(real_logits.detach().float()).mean().item(),
        "d_fake": torch.sigmoid(fake_logits.detach().float()).mean().item(),
    }


@contextlib.contextmanager
def frozen(network: nn.Module) -> Iterator[None]:
    """Inside, `network`'s weights get no gradients (gradients still flow through it to its
    inputs: how a generator learns through the discriminator)."""
    network.requires_grad_(False)
    try:
        yield
    finally:
        network.requires_grad_(True)


# ---------------------------------------------------------------------------------------------
# The Gaussian latent of VAEs.


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) (Kingma & Welling 2014, section 2.4)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def gaussian_kl_terms(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) of each latent dimension of each item, (B, D):
    -1/2 (1 + logvar - mu^2 - exp(logvar)) (Kingma & Welling 2014, appendix B)."""
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """`gaussian_kl_terms` summed over latent dimensions and batch."""
    return gaussian_kl_terms(mu, logvar).sum()


class GaussianMixture(nn.Module):
    """A mixture of `components` full-covariance Gaussians over `dims` dimensions, fitted by EM
    (Dempster et al. 1977) and sampled with a CPU generator.

    A VAE trained against N(0, I) leaves its aggregate posterior q(z) = E_x q(z | x) far from
    N(0, I): prior samples fall between the classes' regions and decode to blurry in-betweens.
    Fitting a mixture to the training set's codes after training and sampling from it instead
    (Ghosh et al. 2020, section 4, "ex-post density estimation", who fit the codes of a
    deterministic autoencoder; https://arxiv.org/abs/1903.12436) draws codes where the decoder
    was trained. Its
    parameters are buffers, so they travel in the checkpoint; until `fit` has run, `sample`
    draws N(0, I)."""

    def __init__(self, components: int, dims: int) -> None:
        super().__init__()
        self.components, self.dims = components, dims
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, dims))
        eye = torch.eye(dims).expand(components, dims, dims)
        self.register_buffer("scale_tril", eye.clone())  # Cholesky factors of the covariances

    @torch.no_grad()
    def fit(
        self, points: torch.Tensor, seed: int = 0, iterations: int = 100, tolerance: float = 1e-3
    ) -> float:
        """Fit to `points` (N, dims) from a k-means++ start seeded by `seed`, until the mean
        log-likelihood gains less than `tolerance` nats per point (scikit-learn's defaults for
        its GaussianMixture: 100 iterations, 1e-3); returns that mean log-likelihood.
        Covariances get 1e-6 on their diagonal, so none is singular."""
        x = points.detach().double().cpu()  # (N, D)
        if len(x) < self.components:
            raise ValueError(f"{len(x)} points cannot fit {self.components} components")
        means = _kmeans_plus_plus(x, self.components, torch.Generator().manual_seed(seed))
        covariances = torch.cov(x.T).expand(self.components, -1, -1).clone()  # (K, D, D)
        weights = torch.full((self.components,), 1.0 / self.components, dtype=torch.float64)
        ridge = 1e-6 * torch.eye(self.dims, dtype=torch.float64)
        previous = -math.inf
        for _ in range(iterations):
            # E step: responsibilities r (N, K) of each component for each point.
            log_joint = self._log_densities(x, means, torch.linalg.cholesky(covariances))
            log_joint = log_joint + weights.log()
            log_likelihood = torch.logsumexp(log_joint, dim=1)  # (N,)
            r = (log_joint - log_likelihood[:, None]).exp()
            # M step: the responsibility-weighted means and covariances.
            counts = r.sum(0) + 1e-12  # (K,)
            weights = counts / len(x)
            means = (r.T @ x) / counts[:, None]  # (K, D)
            second_moments = (r.T[:, :, None] * x).transpose(1, 2) @ x  # (K, D, D)
            outer = means[:, :, None] * means[:, None, :]
            covariances = second_moments / counts[:, None, None] - outer + ridge
            mean_log_likelihood = float(log_likelihood.mean())
            if mean_log_likelihood - previous < tolerance:
                break
            previous = mean_log_likelihood
        self.weights.copy_(weights)
        self.means.copy_(means)
        self.scale_tril.copy_(torch.linalg.cholesky(covariances))
        self.fitted.fill_(True)
        return mean_log_likelihood

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator | None = None) -> torch.Tensor:
        """n points (n, dims) on the CPU: a component by its weight, then its Gaussian; N(0, I)
        before `fit`."""
        if not bool(self.fitted):
            return torch.randn(n, self.dims, generator=rng)
        component = torch.multinomial(self.weights.cpu(), n, replacement=True, generator=rng)
        noise = torch.randn(n, self.dims, 1, generator=rng)
        scale = self.scale_tril.cpu()[component]  # (n, D, D)
        return self.means.cpu()[component] + (scale @ noise).squeeze(-1)

    def log_prob(self, points: torch.Tensor) -> torch.Tensor:
        """log p(z) (N,) of points (N, dims) under the mixture."""
        means, scale_tril = self.means.double().cpu(), self.scale_tril.double().cpu()
        log_joint = self._log_densities(points.double().cpu(), means, scale_tril)
        return torch.logsumexp(log_joint + self.weights.double().cpu().log(), dim=1)

    @staticmethod
    def _log_densities(x: torch.Tensor, means: torch.Tensor, scale_tril: torch.Tensor):
        """log N(x_n | mean_k, L_k L_k^T) (N, K)."""
        # |L^-1 (x - m)|^2 = |x L^-T - m L^-T|^2: one matmul per component.
        eye = torch.eye(x.shape[1], dtype=x.dtype).expand_as(scale_tril)
        inverse_t = torch.linalg.solve_triangular(scale_tril, eye, upper=False).transpose(1, 2)
        whitened = x @ inverse_t - (means[:, None] @ inverse_t)  # (K, N, D)
        mahalanobis = whitened.pow(2).sum(2)  # (K, N)
        log_det = scale_tril.diagonal(dim1=1, dim2=2).log().sum(1)  # (K,): half log |Sigma|
        dims = x.shape[1]
        return (-0.5 * mahalanobis - log_det[:, None] - 0.5 * dims * math.log(2 * math.pi)).T


def _kmeans_plus_plus(x: torch.Tensor, k: int, rng: torch.Generator) -> torch.Tensor:
    """k starting means chosen among the rows of x (N, D) by k-means++ (Arthur & Vassilvitskii
    2007): each next one with probability proportional to its squared distance to the nearest
    chosen so far."""
    chosen = [int(torch.randint(len(x), (1,), generator=rng))]
    distance = (x - x[chosen[0]]).pow(2).sum(1)
    for _ in range(k - 1):
        chosen.append(int(torch.multinomial(distance / distance.sum(), 1, generator=rng)))
        distance = torch.minimum(distance, (x - x[chosen[-1]]).pow(2).sum(1))
    return x[chosen].clone()


# ---------------------------------------------------------------------------------------------
# Self-attention and spectral norm.


class SelfAttention2d(nn.Module):
    """SAGAN self-attention over the positions of a feature map (Zhang et al. 2019, eq. 1-3).

    1x1 convolutions give queries and keys (C/8 channels) and values (C channels); the softmax
    runs over all H*W positions; the output is x + gamma * attention(x), with the learned scalar
    gamma initialised at 0 so the block starts as the identity.
    """

    def __init__(self, channels: int, spectral_norm: bool = False) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.query = with_spectral_norm(nn.Conv2d(channels, inner, 1), spectral_norm)
        self.key = with_spectral_norm(nn.Conv2d(channels, inner, 1), spectral_norm)
        self.value = with_spectral_norm(nn.Conv2d(channels, channels, 1), spectral_norm)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        # (B, 1, HW, C') tokens: one head, positions as the sequence. SAGAN does not scale the
        # scores by 1/sqrt(C'), hence scale=1.0.
        query = self.query(x).flatten(2).transpose(1, 2).unsqueeze(1)
        key = self.key(x).flatten(2).transpose(1, 2).unsqueeze(1)
        value = self.value(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C)
        attended = F.scaled_dot_product_attention(query, key, value, scale=1.0)
        attended = attended.squeeze(1).transpose(1, 2).reshape(batch, channels, height, width)
        return x + self.gamma * attended


def with_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """`module` with spectral normalisation of its weight when `enabled` (Miyato et al. 2018)."""
    if not enabled:
        return module
    return nn.utils.parametrizations.spectral_norm(module)


# ---------------------------------------------------------------------------------------------
# Class conditioning.


class ClassProjection(nn.Module):
    """The projection discriminator's class term: <embed(y), features> (Miyato & Koyama 2018).

    Add its output to the unconditional logit: D(x, y) = linear(phi(x)) + embed(y) . phi(x).
    The embedding starts at N(0, 0.02), the scale of the linear head: nn.Embedding's N(0, 1)
    makes the class term of a 2048-feature phi about 50 times the head's at the start, and D
    then separates real from generated by the class term alone, with logits in the tens.
    """

    def __init__(self, num_classes: int, features: int, spectral_norm: bool = False) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_classes, features)
        nn.init.normal_(self.embedding.weight, 0.0, 0.02)
        if spectral_norm:
            self.embedding = nn.utils.parametrizations.spectral_norm(self.embedding)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, group: int = 1) -> torch.Tensor:
        """features (B/g, F) of inputs that each hold `group` images (a PacGAN pack), labels
        (B,) of the images -> (B/g,): the pack's class embeddings averaged."""
        embedded = self.embedding(labels).view(len(features), group, -1).mean(dim=1)  # (B/g, F)
        return (embedded * features).sum(dim=1)


class ConditionalBatchNorm(nn.Module):
    """Batch norm with a learned scale and shift per class (conditional batch norm, de Vries et
    al. 2017, https://arxiv.org/abs/1707.00683): gamma_y * normalise(x) + beta_y, gamma_y
    starting at 1 and beta_y at 0.

    Why a generator takes its label here and not as an embedding beside z: batch norm rescales
    each channel to unit variance over the batch. With the label beside z, the label's share of
    a channel's variance can grow until the noise's share is normalised away, and the generator
    draws one image per class, whatever z (measured on Fashion-MNIST: each class's samples were
    one image repeated). Here the noise is the only varying input before every normalisation,
    and the label only moves and scales what the noise made.
    """

    def __init__(self, features: int, num_classes: int, dims: int = 2) -> None:
        super().__init__()
        self.norm = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(features, affine=False)
        self.scale = nn.Embedding(num_classes, features)
        self.shift = nn.Embedding(num_classes, features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        shape = (len(x), -1) + (1,) * (x.dim() - 2)  # (B, F) or (B, F, 1, 1)
        return self.norm(x) * self.scale(labels).view(shape) + self.shift(labels).view(shape)


def batch_norm(features: int, config, dims: int = 2) -> nn.Module:
    """A generator's batch norm: conditional on the class when `config.conditional`."""
    if config.conditional:
        return ConditionalBatchNorm(features, config.num_classes, dims)
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(features)


def feature_norm(channels: int, config) -> nn.Module:
    """BatchNorm2d in a network that sees training images, or GroupNorm (gcd(32, channels)
    groups) when `config.privacy` trains it with DP-SGD: batch norm mixes a batch, so a
    per-sample gradient does not exist under it (Opacus's ModuleValidator.fix makes this swap)."""
    if config.privacy.group_norm:
        return nn.GroupNorm(math.gcd(32, channels), channels)
    return nn.BatchNorm2d(channels)


def run_conditioned(
    layers: nn.Sequential, x: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    """`layers` in order on x, handing `labels` to the conditional batch norms among them."""
    for layer in layers:
        x = layer(x, labels) if isinstance(layer, ConditionalBatchNorm) else layer(x)
    return x


def one_hot_maps(labels: torch.Tensor, num_classes: int, height: int, width: int) -> torch.Tensor:
    """Labels (B,) as constant one-hot feature maps (B, K, H, W), to concatenate to an image."""
    one_hot = F.one_hot(labels, num_classes).float()  # (B, K)
    return one_hot[:, :, None, None].expand(-1, -1, height, width)


def default_labels(n: int, num_classes: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Balanced labels 0, 1, ..., K-1, 0, 1, ... for conditional sampling without labels."""
    return torch.arange(n, device=device) % num_classes


def sampling_labels(config, n: int, labels: torch.Tensor | None, device) -> torch.Tensor | None:
    """The labels a generator gets: None when `config.conditional` is false, balanced classes
    when none are given, else `labels` checked against `config.num_classes`."""
    if not config.conditional:
        return None
    if labels is None:
        return default_labels(n, config.num_classes, device)
    check_labels(labels, config.num_classes)
    return labels.to(device)


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Raise a clear error when labels do not fit a conditional model (say, -1 = unlabelled)."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"a conditional model needs labels in 0..{num_classes - 1}, got "
            f"{int(labels.min())}..{int(labels.max())}"
        )


# ---------------------------------------------------------------------------------------------
# Sizes and initialisation.


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters in `module`."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2016): conv/linear weights ~ N(0, 0.02), norm
    scales ~ N(1, 0.02), biases 0. Use as `network.apply(init_dcgan_weights)`."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        weight = module.parametrizations.weight.original if _parametrized(module) else module.weight
        nn.init.normal_(weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _parametrized(module: nn.Module) -> bool:
    return hasattr(module, "parametrizations") and "weight" in module.parametrizations


class ConvPyramid:
    """Config helpers for the families whose networks halve the side from image_size / 2 down
    to 4 while doubling the channels (dcgan, vae, vaegan); mixed into their frozen dataclasses,
    which have `image_size`, `width`, `num_classes`, `conditional` fields and a `family`."""

    def check_pyramid(self, minimum: int, name: str) -> None:
        """A clear error for an image size the pyramid cannot take."""
        size = self.image_size
        if size < minimum or size & (size - 1):
            raise ParamsError(
                f"train.{self.family}: image_size = {size} (data.image_size) is not allowed; "
                f"{name} needs a power of two >= {minimum}"
            )

    @property
    def label_inputs(self) -> int:
        return self.num_classes if self.conditional else 0

    def sides(self) -> list[int]:
        """Feature-map sides inside the networks: 4, 8, ..., image_size / 2."""
        return [2**k for k in range(2, self.image_size.bit_length() - 1)]

    def channels_at(self, side: int) -> int:
        return self.width * (self.image_size // 2) // side
