"""The interface every model family implements (see `aigc.models` for the contract), and the
two shapes of it that several families share: a GAN on a noise vector, and a VAE's encoder and
decoder (optionally conditional)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from aigc.models.layers import ConvPyramid, adversarial_step, one_hot_maps, sampling_labels


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


def downsampling(config: ConvPyramid, inputs: int, batch_norm: bool) -> nn.Sequential:
    """(B, inputs, H, W) -> stride-2 4x4 convs (LeakyReLU 0.2) -> (B, 16 channels_at(4))."""
    layers: list[nn.Module] = [nn.Conv2d(inputs, config.width, 4, 2, 1), nn.LeakyReLU(0.2)]
    for side in reversed(config.sides()[1:]):  # (B, c, side, side) -> (B, 2c, side/2, side/2)
        out = config.channels_at(side // 2)
        layers.append(nn.Conv2d(config.channels_at(side), out, 4, 2, 1))
        layers += [nn.BatchNorm2d(out)] if batch_norm else []
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
        layers: list[nn.Module] = [nn.BatchNorm2d(self.first), nn.ReLU()]
        for side in config.sides()[:-1]:  # (B, c, side, side) -> (B, c/2, 2 side, 2 side)
            out = config.channels_at(2 * side)
            layers += [
                nn.ConvTranspose2d(config.channels_at(side), out, 4, 2, 1),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
        layers.append(nn.ConvTranspose2d(config.width, config.channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.head(z).view(-1, self.first, 4, 4))  # logits (B, C, H, W)


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
