"""A toy model family, written as a new family would be: one file, a Config, a train_step.

It is what `test_contract.py` registers (one line in `MODELS`, one params section) to show that
the contract test picks up a family it has never heard of. The model: a linear decoder from
z ~ N(0, I) to pixel logits, trained to reconstruct each batch from fresh noise (so it learns
the mean image; a toy, not a generator worth sampling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from aigc.models.base import ImageConfig, ImageModel
from aigc.models.layers import sampling_labels
from aigc.params import spec


@dataclass(frozen=True)
class Config(ImageConfig):
    family: ClassVar[str] = "toy"

    latent_dim: int = spec(default=4, ge=1, doc="size of z")


class Toy(ImageModel):
    Config = Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        pixels = config.channels * config.image_size**2
        inputs = config.latent_dim + (config.num_classes if config.conditional else 0)
        self.decoder = nn.Linear(inputs, pixels)
        adam = torch.optim.Adam(self.parameters(), config.learning_rate, config.betas)
        self.optimizers = {"toy": adam}

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    @property
    def sampling_network(self) -> nn.Module:
        return self.decoder

    def logits(self, latents: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is not None:
            one_hot = F.one_hot(labels, self.config.num_classes).to(latents.dtype)
            latents = torch.cat([latents, one_hot], dim=1)
        size = self.config.image_size
        return self.decoder(latents).view(-1, self.config.channels, size, size)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        labels = self.condition(labels)
        latents = torch.randn(len(images), *self.latent_shape, device=images.device)
        loss = F.binary_cross_entropy_with_logits(self.logits(latents, labels), images)
        self.optimize("toy", loss)
        return {"loss": loss.item()}

    def private_networks(self) -> dict[str, nn.Module]:
        return {"toy": self.decoder}

    @torch.no_grad()
    def membership_scores(self, images: torch.Tensor, labels=None) -> torch.Tensor:
        """Minus the reconstruction loss from z = 0, per image."""
        labels = sampling_labels(self.config, len(images), labels, self.device)
        zeros = torch.zeros(len(images), *self.latent_shape, device=self.device)
        losses = F.binary_cross_entropy_with_logits(
            self.logits(zeros, labels), images.to(self.device), reduction="none"
        )
        return -losses.flatten(1).mean(1)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = sampling_labels(self.config, len(latents), labels, self.device)
        return torch.sigmoid(self.logits(latents.to(self.device), labels))


MODEL = Toy
