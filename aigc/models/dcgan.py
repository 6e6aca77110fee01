"""DCGAN (Radford et al. 2016, https://arxiv.org/abs/1511.06434), with SAGAN's options.

Generator: z -> 4x4 by a transposed conv, then stride-2 transposed convs that double the side
(batch norm, ReLU) up to the image, tanh output. Discriminator: stride-2 convs that halve the
side (LeakyReLU 0.2, batch norm after the first) down to 4x4, then one logit. Channels follow
`width`: `width` at side image_size/2, doubled per halving (pytorch/examples' ngf*8 at 4x4 for
64x64 is width * 8). Weights ~ N(0, 0.02); Adam 2e-4, beta1 0.5.

Options: `attention_resolution` puts a SAGAN self-attention block (Zhang et al. 2019) at that
side in both networks; `spectral_norm` normalises every discriminator layer (Miyato et al.
2018) and then drops its batch norm, as SN-GAN does; `loss: hinge`; `label_smoothing`. Under
`privacy` (DP-SGD on D, aigc/privacy.py) D's batch norm becomes GroupNorm.
`conditional`: class-conditional batch norm in G, projection term in D (see layers.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from aigc.models.base import AdversarialConfig, NoiseGAN
from aigc.models.layers import (
    ClassProjection,
    ConvPyramid,
    SelfAttention2d,
    batch_norm,
    d_scores,
    discriminator_loss,
    feature_norm,
    frozen,
    generator_loss,
    init_dcgan_weights,
    r1_penalty,
    run_conditioned,
    with_spectral_norm,
)
from aigc.params import ParamsError, spec


@dataclass(frozen=True)
class Config(ConvPyramid, AdversarialConfig):
    family: ClassVar[str] = "dcgan"

    latent_dim: int = spec(default=64, ge=1, doc="size of the noise vector z")
    width: int = spec(default=32, ge=1, doc="channels at side image_size/2, doubled per halving")
    spectral_norm: bool = spec(default=False, doc="spectral norm on D's layers")
    attention_resolution: int = spec(default=0, ge=0, doc="side of the SAGAN block (0 = none)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_pyramid(16, "DCGAN")
        sides = self.sides()
        if self.attention_resolution and self.attention_resolution not in sides:
            raise ParamsError(
                f"train.dcgan.attention_resolution = {self.attention_resolution} is not a "
                f"feature-map side; allowed: 0 (none), {', '.join(map(str, sides))}"
            )


class Generator(nn.Module):
    """z (B, latent_dim) [, labels (B,)] -> (B, C, H, W) in [-1, 1]."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        first = config.channels_at(4)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(config.latent_dim, first, 4, 1, 0, bias=False),  # (B, 4w', 4, 4)
            batch_norm(first, config),
            nn.ReLU(),
        ]
        for side in config.sides():
            if side == config.attention_resolution:
                layers.append(SelfAttention2d(config.channels_at(side)))
            if side < config.image_size // 2:  # (B, c, side, side) -> (B, c/2, 2 side, 2 side)
                out = config.channels_at(2 * side)
                layers += [
                    nn.ConvTranspose2d(config.channels_at(side), out, 4, 2, 1, bias=False),
                    batch_norm(out, config),
                    nn.ReLU(),
                ]
        layers += [nn.ConvTranspose2d(config.width, config.channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return run_conditioned(self.net, z[:, :, None, None], labels)  # (B, C, H, W)


class Discriminator(nn.Module):
    """(B, C, H, W) in [-1, 1] -> one logit per image (B,)."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        norm = config.spectral_norm

        def conv(inputs: int, outputs: int) -> nn.Module:
            return with_spectral_norm(nn.Conv2d(inputs, outputs, 4, 2, 1), norm)

        layers: list[nn.Module] = [conv(config.channels, config.width), nn.LeakyReLU(0.2)]
        for side in reversed(config.sides()):  # image_size/2, ..., 4
            if side == config.attention_resolution:
                layers.append(SelfAttention2d(config.channels_at(side), spectral_norm=norm))
            if side > 4:  # (B, c, side, side) -> (B, 2c, side/2, side/2)
                out = config.channels_at(side // 2)
                layers.append(conv(config.channels_at(side), out))
                layers += [nn.Identity() if norm else feature_norm(out, config), nn.LeakyReLU(0.2)]
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        features = config.channels_at(4) * 4 * 4
        # A linear layer on the flattened 4x4 map: DCGAN's final 4x4 valid conv, written so the
        # projection term can use the same features.
        self.head = with_spectral_norm(nn.Linear(features, 1), norm)
        self.projection = None
        if config.conditional:
            self.projection = ClassProjection(config.num_classes, features, spectral_norm=norm)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        features = self.features(images)  # (B, 16 * channels_at(4))
        logits = self.head(features).squeeze(1)
        if self.projection is not None:
            logits = logits + self.projection(features, labels)
        return logits


class DCGAN(NoiseGAN):
    Config = Config

    def __init__(self, config: Config) -> None:
        super().__init__(config, Generator(config), Discriminator(config))
        self.apply(init_dcgan_weights)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One alternating update of D, then G (Goodfellow et al. 2014, algorithm 1, k = 1),
        with the non-saturating loss or the hinge loss of SAGAN."""
        config = self.config
        labels = self.condition(labels)
        real = images * 2 - 1  # (B, C, H, W) in [-1, 1], the range of G's tanh
        noise = torch.randn(len(images), config.latent_dim, device=images.device)
        fake = self.generator(noise, labels)

        # Discriminator: maximise log D(x) + log(1 - D(G(z))), or minimise the hinge loss
        # max(0, 1 - D(x)) + max(0, 1 + D(G(z))).
        real_logits = self.discriminate(real.requires_grad_(config.r1_gamma > 0), labels)
        fake_logits = self.discriminate(fake.detach(), labels)
        d_loss = discriminator_loss(real_logits, fake_logits, config.loss, config.label_smoothing)
        d_loss = d_loss + r1_penalty(real_logits, real, config.r1_gamma)
        self.optimize("discriminator", d_loss)

        # Generator: minimise -log D(G(z)) (bce) or -D(G(z)) (hinge), through a frozen D.
        with frozen(self.discriminator):
            g_loss = generator_loss(self.discriminate(fake, labels), config.loss)
            self.optimize("generator", g_loss)
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()} | d_scores(
            real_logits, fake_logits
        )


MODEL = DCGAN
