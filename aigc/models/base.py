"""The interface every model family implements (see `aigc.models` for the contract), and the
two shapes of it that several families share: a GAN on a noise vector, and a VAE's encoder and
decoder (optionally conditional)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from aigc.models.layers import adversarial_step, one_hot_maps, sampling_labels


class GenerativeModel(nn.Module):
    """Base class: a family sets `Config`, builds its networks and optimizers in `__init__`."""

    Config: ClassVar[type]
    encodes: ClassVar[bool] = False  # True for families with reconstruct/encode/decode

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    @property
    def generator(self) -> nn.Module:
        """The submodule that `sample` runs; EMA averages its weights."""
        raise NotImplementedError

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def configure_sampling(
        self, sampler: str = "ddim", steps: int = 25, eta: float = 0.0, guidance_scale: float = 1.0
    ) -> None:
        """Set how `sample` runs; only families with an iterative sampler (diffusion) use it."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class NoiseGAN(GenerativeModel):
    """A GAN whose generator `net_g(z, labels)` maps noise z ~ N(0, I) of `latent_dim` to images
    in [-1, 1] and whose discriminator `net_d` is trained against it by
    `layers.adversarial_step`; a subclass builds the two networks."""

    def __init__(self, config, net_g: nn.Module, net_d: nn.Module) -> None:
        super().__init__(config)
        self.net_g, self.net_d = net_g, net_d
        betas = (config.beta1, config.beta2)
        self.optimizers = {
            "generator": torch.optim.Adam(net_g.parameters(), config.learning_rate, betas),
            "discriminator": torch.optim.Adam(net_d.parameters(), config.learning_rate, betas),
        }

    @property
    def generator(self) -> nn.Module:
        return self.net_g

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        return adversarial_step(self, images, labels)

    @torch.no_grad()
    def sample(self, n, labels=None, generator=None) -> torch.Tensor:
        noise = torch.randn(n, *self.latent_shape, generator=generator).to(self.device)
        return self.decode(noise, labels)

    @torch.no_grad()
    def decode(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] from noise vectors (B, latent_dim)."""
        labels = sampling_labels(self.config, len(noise), labels, self.device)
        return (self.net_g(noise.to(self.device), labels).float() + 1) / 2


class VariationalAutoencoder(GenerativeModel):
    """A VAE's shared half: `encoder(x)` gives the posterior (mu, logvar) of z, `decoder(z)` pixel
    logits; conditional models get one-hot label maps beside the image and a one-hot label
    beside z (a CVAE). Samples decode z ~ N(0, I), the prior. A subclass builds the two
    networks (and anything else it trains) and defines `train_step`."""

    encodes = True

    @property
    def generator(self) -> nn.Module:
        return self.decoder

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    @torch.no_grad()
    def sample(self, n, labels=None, generator=None) -> torch.Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(self.device)
        return self.decode(z, labels)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior means mu (B, latent_dim) of images in [0, 1]."""
        labels = sampling_labels(self.config, len(images), labels, self.device)
        mu, _ = self.encoder(self._encoder_input(images.to(self.device), labels))
        return mu

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] from latents z (B, latent_dim)."""
        labels = sampling_labels(self.config, len(z), labels, self.device)
        logits = self.decoder(self._decoder_input(z.to(self.device), labels))
        return torch.sigmoid(logits.float())

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(images, labels), labels)

    def _encoder_input(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            return images
        size = self.config.image_size
        maps = one_hot_maps(labels, self.config.num_classes, size, size).to(images.dtype)
        return torch.cat([images, maps], dim=1)  # (B, C + K, H, W)

    def _decoder_input(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            return z
        return torch.cat([z, F.one_hot(labels, self.config.num_classes).to(z.dtype)], dim=1)
