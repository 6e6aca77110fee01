"""The family contract: what every model family is and does, declared here once.

- `FamilyConfig`: the fields every family's `Config` shares — `num_classes` (filled in from
  the training data, never from params.yaml), `conditional`, the Adam settings and `privacy`.
  `ImageConfig` adds the images' shape (`image_size`, `channels`, also from the data); a text
  family's `TextConfig` (aigc/models/text/base.py) adds its vocabulary and length instead. A
  family's `Config` is a frozen dataclass that subclasses one of them, adds its own fields and
  sets `family` (its key in `MODELS`, for messages).
- `GenerativeModel`: the base class, the same for every modality. A family builds its
  networks and `optimizers` in `__init__` and implements the abstract members; the stages and
  the training loop call nothing else:

      modality                                             "image" or "text": the data it takes
      train_step(batch, labels) -> {"loss name": float}   the family's objective, one update
      sample(n, labels, rng)                               n new items (images or token rows)
      preview(rng)                                         the loop's per-epoch look at samples
      sampling_network                                     the submodule EMA averages
      encodes, encode, reconstruct                         for families with an encoder
      configure_sampling(...)                              for families with a sampler to set
      plan(total_steps)                                    for families with an LR schedule
      finish(batches) -> {"name": float}                   after the last step: what a pass
                                                           over the training set fits (a prior)
      membership_scores(batch, labels) -> (B,)            the white-box membership attack
      private_networks() -> {optimizer name: network}     what DP-SGD clips and noises

- `ImageModel`: an image family. Batches are float images (B, C, H, W) in [0, 1]; it adds
  `latent_shape`, `latents(n, rng)` and `decode(latents, labels)`: the noise `sample` draws
  (default N(0, I)) and maps, which interpolations walk. `TextModel` (aigc/models/text/base.py)
  is its text counterpart: batches of token rows, autoregressive sampling, and the
  likelihood that held-out bits per character come from.

  `FamilyConfig.privacy` (aigc/privacy.py) is every family's DP-SGD option; a family that
  cannot train privately says why in `Config.cannot_train_privately`, and its Config refuses.

The two shapes several families share sit here too: `NoiseGAN` (a generator on a noise vector
and a discriminator) and `VariationalAutoencoder` (a conditional-capable encoder and decoder).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aigc.images import GRID_SIZE, make_grid
from aigc.models.layers import (
    DIFF_AUGMENTATIONS,
    GAN_LOSSES,
    ConvPyramid,
    GaussianMixture,
    check_labels,
    diff_augment,
    feature_norm,
    one_hot_maps,
    sampling_labels,
)
from aigc.params import ParamsError, spec
from aigc.privacy import PrivacyConfig, as_privacy_config


@dataclass(frozen=True, kw_only=True)
class FamilyConfig:
    """Shape of the data, conditioning and optimiser: the fields every family shares."""

    family: ClassVar[str] = "model"  # the family's key in MODELS (its params section)
    cannot_train_privately: ClassVar[str] = ""  # why DP-SGD does not apply ("" = it does)

    num_classes: int = spec(ge=0, doc="number of classes in the data (0 = unlabelled)")
    conditional: bool = spec(default=False, doc="class-conditional (needs labelled data)")
    learning_rate: float = spec(default=2e-4, gt=0.0, doc="Adam learning rate")
    beta1: float = spec(default=0.5, ge=0.0, lt=1.0, doc="Adam beta1")
    beta2: float = spec(default=0.999, ge=0.0, lt=1.0, doc="Adam beta2")
    privacy: PrivacyConfig = spec(default=PrivacyConfig(), doc="DP-SGD (aigc/privacy.py)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "privacy", as_privacy_config(self.privacy))  # from a checkpoint
        self.privacy.check(self.family)
        if self.conditional and self.num_classes < 1:
            raise ParamsError(
                f"train.{self.family}.conditional = true needs labelled data; it has none"
            )
        if self.privacy.enabled and self.cannot_train_privately:
            raise ParamsError(
                f"train.{self.family}.privacy: {self.family} cannot train with DP-SGD: "
                f"{self.cannot_train_privately}; allowed: privacy.epsilon = 0 and "
                "privacy.noise_multiplier = 0"
            )

    def refuse_under_privacy(self, key: str, why: str, allowed: str) -> None:
        """A ParamsError naming train.FAMILY.KEY, its value, why DP-SGD cannot have it and what
        is allowed, when privacy is on and the option is set."""
        value = getattr(self, key)
        if self.privacy.enabled and value:
            shown = str(value).lower() if isinstance(value, bool) else value
            raise ParamsError(
                f"train.{self.family}.{key} = {shown}: {why}; allowed with privacy: {allowed}"
            )

    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    @property
    def batch_multiple(self) -> int:
        """Each process's batch must be a multiple of this (a GAN's packs of images)."""
        return 1


@dataclass(frozen=True, kw_only=True)
class ImageConfig(FamilyConfig):
    """A `FamilyConfig` with the shape of the images (both from the data)."""

    image_size: int = spec(ge=4, doc="side of the square images (from the data)")
    channels: int = spec(choices=(1, 3), doc="image channels (from the data)")


@dataclass(frozen=True, kw_only=True)
class VariationalConfig(ImageConfig):
    """An `ImageConfig` with the prior the families built on `VariationalAutoencoder` sample."""

    prior_components: int = spec(
        default=0,
        ge=0,
        doc="components of a Gaussian mixture fitted to the training set's codes "
        "after training, which samples are drawn from (0 = N(0, I))",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.refuse_under_privacy(
            "prior_components",
            "the mixture prior is fitted to the training images' codes outside DP-SGD's accounting",
            "0",
        )


@dataclass(frozen=True, kw_only=True)
class AdversarialConfig(ImageConfig):
    """The fields of a GAN's game, shared by the families built on `NoiseGAN`."""

    loss: str = spec(default="bce", choices=GAN_LOSSES, doc="GAN objective")
    label_smoothing: float = spec(default=0.0, ge=0.0, lt=1.0, doc="one-sided, bce only")
    diff_augment: tuple[str, ...] = spec(
        default=(), choices=DIFF_AUGMENTATIONS, doc="DiffAugment policy of D's inputs"
    )
    discriminator_learning_rate: float = spec(
        default=0.0, ge=0.0, doc="D's Adam learning rate (TTUR); 0 = learning_rate"
    )
    r1_gamma: float = spec(
        default=0.0, ge=0.0, doc="weight of the R1 penalty on D's gradient at real images (0 = off)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.refuse_under_privacy(
            "r1_gamma",
            "the R1 penalty differentiates D's gradient again, which DP-SGD's per-sample "
            "gradients do not",
            "0",
        )


class GenerativeModel(nn.Module, abc.ABC):
    """Base class of every family (see the module docstring for the contract)."""

    Config: ClassVar[type[FamilyConfig]]
    modality: ClassVar[str]  # "image" (ImageModel) or "text" (TextModel): the data it trains on
    encodes: ClassVar[bool] = False  # True: encode and reconstruct work

    def __init__(self, config: FamilyConfig) -> None:
        super().__init__()
        self.config = config
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    # -- what a family implements ----------------------------------------------------------------

    @abc.abstractmethod
    def train_step(self, batch: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One update on a batch of the family's modality (float images (B, C, H, W) in [0, 1],
        or int64 token rows (B, L)) and int64 labels (B,) (-1 = unlabelled); returns the named
        losses of the step."""

    @abc.abstractmethod
    def sample(
        self, n: int, labels: torch.Tensor | None = None, rng: torch.Generator | None = None
    ) -> torch.Tensor:
        """n new items from the noise of the CPU generator `rng` (images in [0, 1], or token
        rows); a conditional model gets `labels` (n,) or balanced classes."""

    @abc.abstractmethod
    def preview(self, rng: torch.Generator) -> np.ndarray | str:
        """What the training loop logs once an epoch: a grid image (H, W[, C]) uint8, or the
        text of a few samples. In eval mode, under no_grad."""

    @property
    @abc.abstractmethod
    def sampling_network(self) -> nn.Module:
        """The submodule `sample` runs; the loop's EMA averages its weights."""

    @abc.abstractmethod
    def membership_scores(
        self, batch: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A white-box membership-inference score (B,) of a batch as `train_step` takes it:
        higher means likelier a training item (the model's own loss or critic, negated where
        lower means member). Deterministic; the audit calls it in eval mode, on batches that
        mix members and non-members."""

    # -- what a family may override --------------------------------------------------------------

    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no encoder")

    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no encoder")

    def configure_sampling(
        self, sampler: str = "ddim", steps: int = 25, eta: float = 0.0, guidance_scale: float = 1.0
    ) -> None:
        """Set how `sample` runs; only families with an iterative sampler (diffusion) use it."""

    def plan(self, total_steps: int) -> None:
        """The number of steps the run will take, told by the loop before the first one, for
        families whose learning rate follows a schedule."""

    def finish(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """Called once after the last step, in eval mode under no_grad, with the whole training
        set in order as (batch, labels) pairs: for what a family fits to the data outside its
        gradient steps (a VAE's mixture prior). Returns named figures for the training's
        summary. By default nothing."""
        return {}

    def private_networks(self) -> dict[str, nn.Module]:
        """Optimizer name -> the network it updates, for every optimizer whose gradients see
        training images: what DP-SGD clips and noises (aigc/privacy.py). A family whose Config
        allows privacy must name them all."""
        return {}

    # -- helpers for train_step ------------------------------------------------------------------

    @property
    def conditional(self) -> bool:
        return self.config.conditional

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def condition(self, labels: torch.Tensor) -> torch.Tensor | None:
        """The labels a training step conditions on: None for an unconditional model, else
        `labels`, checked to be classes of the data."""
        if not self.conditional:
            return None
        check_labels(labels, self.config.num_classes)
        return labels

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """Zero the gradients of `optimizers[name]`, backpropagate `loss`, take the step."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


class ImageModel(GenerativeModel):
    """An image family: batches of float images (B, C, H, W) in [0, 1]; `sample` decodes noise
    of `latent_shape`, which `decode` maps to images deterministically."""

    modality = "image"

    @property
    @abc.abstractmethod
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one noise sample that `decode` maps to an image (z, or x_T)."""

    @abc.abstractmethod
    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] from latents (B, *latent_shape), deterministically."""

    def latents(self, n: int, rng: torch.Generator | None = None) -> torch.Tensor:
        """n latents (n, *latent_shape) on the CPU from `rng`, the noise `sample` decodes: by
        default N(0, I)."""
        return torch.randn(n, *self.latent_shape, generator=rng)

    @torch.no_grad()
    def sample(
        self, n: int, labels: torch.Tensor | None = None, rng: torch.Generator | None = None
    ) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1]: `latents` from the CPU generator `rng`, decoded; a
        conditional model gets `labels` (n,) or balanced classes."""
        return self.decode(self.latents(n, rng).to(self.device), labels)

    @torch.no_grad()
    def preview(self, rng: torch.Generator) -> np.ndarray:
        """A grid of GRID_SIZE samples, (H, W) for grey images, else (H, W, C), uint8."""
        grid = make_grid(self.sample(GRID_SIZE, rng=rng))  # (C, H, W)
        return grid[0] if grid.shape[0] == 1 else np.transpose(grid, (1, 2, 0))


class NoiseGAN(ImageModel):
    """A GAN whose `generator(z, labels)` maps noise z ~ N(0, I) of `latent_dim` to images in
    [-1, 1] and whose `discriminator(images, labels)` gives one logit per image; the subclass
    builds both networks and writes the adversarial objective in its own `train_step`."""

    def __init__(self, config, generator: nn.Module, discriminator: nn.Module) -> None:
        super().__init__(config)
        self.generator, self.discriminator = generator, discriminator
        rate, betas = config.learning_rate, config.betas
        # Two time-scale update rule (Heusel et al. 2017): D may learn at its own rate.
        d_rate = config.discriminator_learning_rate or rate
        self.optimizers = {
            "generator": torch.optim.Adam(generator.parameters(), rate, betas),
            "discriminator": torch.optim.Adam(discriminator.parameters(), d_rate, betas),
        }

    def discriminate(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """D's logits (B,) for images in [-1, 1], through the DiffAugment policy when set."""
        return self.discriminator(diff_augment(images, self.config.diff_augment), labels)

    @property
    def sampling_network(self) -> nn.Module:
        return self.generator

    def private_networks(self) -> dict[str, nn.Module]:
        """Only D sees training images; G learns through D (post-processing under DP)."""
        return {"discriminator": self.discriminator}

    @torch.no_grad()
    def membership_scores(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """D's logit (LOGAN's white-box attack, Hayes et al. 2019): an over-fitted D scores
        its training images higher than unseen ones."""
        labels = sampling_labels(self.config, len(images), labels, self.device)
        return self.discriminator(images.to(self.device) * 2 - 1, labels).float()

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = sampling_labels(self.config, len(latents), labels, self.device)
        return (self.generator(latents.to(self.device), labels).float() + 1) / 2


def downsampling(config: ConvPyramid, inputs: int, batch_norm: bool) -> nn.Sequential:
    """(B, inputs, H, W) -> stride-2 4x4 convs (LeakyReLU 0.2) -> (B, 16 channels_at(4)); the
    norm is `feature_norm`'s (GroupNorm under DP-SGD)."""
    layers: list[nn.Module] = [nn.Conv2d(inputs, config.width, 4, 2, 1), nn.LeakyReLU(0.2)]
    for side in reversed(config.sides()[1:]):  # (B, c, side, side) -> (B, 2c, side/2, side/2)
        out = config.channels_at(side // 2)
        layers.append(nn.Conv2d(config.channels_at(side), out, 4, 2, 1))
        layers += [feature_norm(out, config)] if batch_norm else []
        layers.append(nn.LeakyReLU(0.2))
    layers.append(nn.Flatten())
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """(B, C [+ K], H, W) -> mu, logvar (B, latent_dim) each."""

    def __init__(self, config: ConvPyramid) -> None:
        super().__init__()
        self.net = downsampling(config, config.channels + config.label_inputs, batch_norm=True)
        self.head = nn.Linear(config.channels_at(4) * 16, 2 * config.latent_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.net(images)).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """z (B, latent_dim [+ K]) -> 4x4 -> stride-2 transposed convs -> pixel logits (B, C, H, W)."""

    def __init__(self, config: ConvPyramid) -> None:
        super().__init__()
        self.first = config.channels_at(4)
        self.head = nn.Linear(config.latent_dim + config.label_inputs, self.first * 16)
        layers: list[nn.Module] = [feature_norm(self.first, config), nn.ReLU()]
        for side in config.sides()[:-1]:  # (B, c, side, side) -> (B, c/2, 2 side, 2 side)
            out = config.channels_at(2 * side)
            layers += [
                nn.ConvTranspose2d(config.channels_at(side), out, 4, 2, 1),
                feature_norm(out, config),
                nn.ReLU(),
            ]
        layers.append(nn.ConvTranspose2d(config.width, config.channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.head(z).view(-1, self.first, 4, 4))  # logits (B, C, H, W)


class VariationalAutoencoder(ImageModel):
    """A VAE's shared half: `encoder(x)` gives the posterior (mu, logvar) of z, `decoder(z)` pixel
    logits; conditional models get one-hot label maps beside the image and a one-hot label
    beside z (a CVAE). Samples decode z ~ N(0, I), the prior, or the Gaussian mixture fitted to
    the training set's codes after training (`prior_components`; layers.GaussianMixture). A
    subclass builds the two networks (and anything else it trains) and writes its objective
    in `train_step`."""

    encodes = True

    def __init__(self, config: VariationalConfig) -> None:
        super().__init__(config)
        self.prior = None
        if config.prior_components:
            self.prior = GaussianMixture(config.prior_components, config.latent_dim)
        # Optimisation steps taken, saved with the weights, for schedules that a resumed run
        # must continue where it stopped (vae's KL warm-up, vaegan's adversarial start).
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    @property
    def sampling_network(self) -> nn.Module:
        return self.decoder

    def latents(self, n: int, rng: torch.Generator | None = None) -> torch.Tensor:
        """z from the fitted mixture prior when there is one, else N(0, I)."""
        return self.prior.sample(n, rng) if self.prior is not None else super().latents(n, rng)

    @torch.no_grad()
    def finish(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """Fit the mixture prior (when `prior_components` > 0) to one draw z ~ q(z | x) of every
        training image x (noise seeded 0): a sample of the aggregate posterior q(z), posterior
        spread included, which fitting the means alone would leave out. Returns its mean
        log-likelihood per image (nats)."""
        if self.prior is None:
            return {}
        rng = torch.Generator().manual_seed(0)
        codes = []
        for images, labels in batches:
            labels = labels if self.conditional else None
            mu, logvar = self.encoder(self.encoder_input(images, labels))
            noise = torch.randn(mu.shape, generator=rng).to(mu.device)
            codes.append((mu + torch.exp(0.5 * logvar) * noise).float().cpu())
        return {"prior_log_likelihood": self.prior.fit(torch.cat(codes))}

    @torch.no_grad()
    def membership_scores(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The ELBO per image at z = mu, Bernoulli likelihood, beta = 1 (the loss-threshold
        attack of Yeom et al. 2018): a model fits its training images better."""
        images = images.to(self.device)
        labels = sampling_labels(self.config, len(images), labels, self.device)
        mu, logvar = self.encoder(self.encoder_input(images, labels))
        logits = self.decoder(self.decoder_input(mu, labels)).float()
        nll = F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).float().sum(1)
        return -(nll.sum(1) + kl)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior means mu (B, latent_dim) of images in [0, 1]."""
        labels = sampling_labels(self.config, len(images), labels, self.device)
        mu, _ = self.encoder(self.encoder_input(images.to(self.device), labels))
        return mu

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = sampling_labels(self.config, len(latents), labels, self.device)
        logits = self.decoder(self.decoder_input(latents.to(self.device), labels))
        return torch.sigmoid(logits.float())

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(images, labels), labels)

    def encoder_input(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Images (B, C, H, W), with one-hot label maps as K more channels when conditional."""
        if labels is None:
            return images
        size = self.config.image_size
        maps = one_hot_maps(labels, self.config.num_classes, size, size).to(images.dtype)
        return torch.cat([images, maps], dim=1)  # (B, C + K, H, W)

    def decoder_input(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """z (B, latent_dim), with a one-hot label beside it when conditional."""
        if labels is None:
            return z
        return torch.cat([z, F.one_hot(labels, self.config.num_classes).to(z.dtype)], dim=1)
