"""The textbook GAN (Goodfellow et al. 2014, https://arxiv.org/abs/1406.2661).

An MLP generator maps noise z ~ N(0, I) to an image; a small convolutional discriminator
scores images as real or generated. The two play the minimax game, with the non-saturating
generator loss -log D(G(z)) (or the hinge loss), Adam at 2e-4 with beta1 = 0.5.
`minibatch_std` gives D's head the spread of its batch's features (Karras et al. 2018), so a
generator that draws few distinct images is told apart from real batches: on Fashion-MNIST it
took FID from 86.4 to 74.6 and the class mix from 9 to 10 classes (params.yaml turns it on).
`packing` m > 1 makes D judge m images at once (PacGAN, Lin et al. 2018; see `pack`).

With `conditional: true` (Mirza & Osindero 2014) the generator's batch norms take the label
(class-conditional batch norm) and the discriminator adds the projection term (Miyato & Koyama
2018; see layers.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from aigc.models.base import AdversarialConfig, NoiseGAN
from aigc.models.layers import (
    ClassProjection,
    batch_norm,
    d_scores,
    discriminator_loss,
    frozen,
    generator_loss,
    r1_penalty,
    run_conditioned,
)
from aigc.params import ParamsError, spec


@dataclass(frozen=True)
class Config(AdversarialConfig):
    family: ClassVar[str] = "gan"

    latent_dim: int = spec(default=64, ge=1, doc="size of the noise vector z")
    width: int = spec(default=256, ge=1, doc="hidden units of the generator's first layer")
    discriminator_width: int = spec(default=32, ge=1, doc="channels of D's first conv")
    minibatch_std: bool = spec(default=False, doc="D sees its batch's feature spread")
    packing: int = spec(default=1, ge=1, doc="images D judges together (PacGAN; 1 = one)")

    @property
    def batch_multiple(self) -> int:
        return self.packing

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, mixes in (("minibatch_std", self.minibatch_std), ("packing", self.packing > 1)):
            if self.privacy.enabled and mixes:
                raise ParamsError(
                    f"train.gan.{key} = {str(getattr(self, key)).lower()} mixes the samples of "
                    "D's batch, so a per-sample gradient does not exist; allowed with privacy: "
                    "minibatch_std = false, packing = 1"
                )

        if self.image_size % 8:
            raise ParamsError(
                f"train.gan: image_size = {self.image_size} (data.image_size) is not allowed; "
                "the GAN's discriminator needs a multiple of 8"
            )


class Generator(nn.Module):
    """z (B, latent_dim) [, labels (B,)] -> MLP -> tanh image (B, C, H, W) in [-1, 1]."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        width = config.width
        pixels = config.channels * config.image_size**2
        self.net = nn.Sequential(
            nn.Linear(config.latent_dim, width),
            nn.LeakyReLU(0.2),
            nn.Linear(width, 2 * width),
            batch_norm(2 * width, config, dims=1),
            nn.LeakyReLU(0.2),
            nn.Linear(2 * width, 4 * width),
            batch_norm(4 * width, config, dims=1),
            nn.LeakyReLU(0.2),
            nn.Linear(4 * width, pixels),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        size = self.config.image_size
        images = run_conditioned(self.net, z, labels)
        return images.view(-1, self.config.channels, size, size)  # (B, C, H, W)


class Discriminator(nn.Module):
    """Images (B, C, H, W) in [-1, 1] -> packs of `packing` images as channels (B/m, mC, H, W)
    -> three stride-2 convs -> one logit per pack (B/m,)."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        width = config.discriminator_width
        self.packing = config.packing
        self.features = nn.Sequential(
            nn.Conv2d(config.packing * config.channels, width, 4, 2, 1),  # (B/m, w, H/2, W/2)
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1),  # (B, 2w, H/4, W/4)
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1),  # (B, 4w, H/8, W/8)
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        features = 4 * width * (config.image_size // 8) ** 2
        self.minibatch_std = config.minibatch_std
        self.head = nn.Linear(features + int(config.minibatch_std), 1)
        self.projection = None
        if config.conditional:
            self.projection = ClassProjection(config.num_classes, features)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        features = self.features(pack(images, self.packing))  # (B/m, F)
        head_input = features
        if self.minibatch_std:
            # Minibatch standard deviation (Karras et al. 2018, section 3): the features' spread
            # over the batch, one extra input to the head. D sees real and generated images in
            # separate batches, so a generator that draws few distinct images is told apart.
            spread = features.float().std(dim=0, unbiased=False).mean()
            head_input = torch.cat([features, spread.expand(len(features), 1)], dim=1)
        logits = self.head(head_input).squeeze(1)
        if self.projection is not None:
            logits = logits + self.projection(features, labels, group=self.packing)
        return logits


def pack(images: torch.Tensor, packing: int) -> torch.Tensor:
    """(B, C, H, W) -> (B/m, mC, H, W): each run of m images of the batch as one input.
    PacGAN (Lin et al. 2018, https://arxiv.org/abs/1712.04086): a generator that draws few
    distinct images gives packs of near-copies, which real packs never are, so D sees mode
    collapse that one image at a time does not show."""
    if packing == 1:
        return images
    count, channels, height, width = images.shape
    if count % packing:
        raise ValueError(
            f"a batch of {count} images does not split into packs of {packing}; "
            "train.gan.batch_size (per process) must be a multiple of train.gan.packing"
        )
    return images.reshape(count // packing, packing * channels, height, width)


class GAN(NoiseGAN):
    Config = Config

    def __init__(self, config: Config) -> None:
        # PyTorch's default init: N(0, 0.02) (DCGAN's) makes an MLP generator map every z to
        # nearly the same image, so it collapses at once.
        super().__init__(config, Generator(config), Discriminator(config))

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One alternating update of D, then G (Goodfellow et al. 2014, algorithm 1, k = 1)."""
        config = self.config
        labels = self.condition(labels)
        real = images * 2 - 1  # (B, C, H, W) in [-1, 1], the range of G's tanh
        noise = torch.randn(len(images), config.latent_dim, device=images.device)
        fake = self.generator(noise, labels)

        # Discriminator: maximise log D(x) + log(1 - D(G(z))) (or the hinge form).
        real_logits = self.discriminate(real.requires_grad_(config.r1_gamma > 0), labels)
        fake_logits = self.discriminate(fake.detach(), labels)
        d_loss = discriminator_loss(real_logits, fake_logits, config.loss, config.label_smoothing)
        d_loss = d_loss + r1_penalty(real_logits, real, config.r1_gamma)
        self.optimize("discriminator", d_loss)

        # Generator: minimise the non-saturating -log D(G(z)) (or -D(G(z)) for hinge).
        with frozen(self.discriminator):
            g_loss = generator_loss(self.discriminate(fake, labels), config.loss)
            self.optimize("generator", g_loss)
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()} | d_scores(
            real_logits, fake_logits
        )

    @torch.no_grad()
    def membership_scores(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """D's logit of each image (LOGAN, as `NoiseGAN`); with packing, of a pack of m copies
        of the image, so each score is one image's."""
        copies = images.repeat_interleave(self.config.packing, dim=0)
        if labels is not None:
            labels = labels.repeat_interleave(self.config.packing, dim=0)
        return super().membership_scores(copies, labels)


MODEL = GAN
