"""Convolutional variational autoencoder (Kingma & Welling 2014, https://arxiv.org/abs/1312.6114)
with a beta weight on the KL term (Higgins et al. 2017, beta-VAE).

The encoder maps an image to the mean mu and log-variance logvar of q(z | x) (mu, logvar are
(B, latent_dim)); z = mu + sigma * eps (the reparameterisation trick); the decoder maps z back to
pixel logits. The loss per image is

    reconstruction(x, decoder(z)) + beta_t * KL(q(z | x) || N(0, I)),

with reconstruction the Bernoulli negative log-likelihood (`bce`) or the summed squared error
(`mse`), and beta_t rising linearly from 0 to `beta` over `warmup_steps` (KL annealing, Bowman
et al. 2016, https://arxiv.org/abs/1511.06349). Samples decode z ~ N(0, I), the prior.

`conditional: true` makes it a CVAE (Sohn et al. 2015): the encoder sees one-hot label maps
beside the image channels and the decoder a one-hot label beside z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from aigc.models.base import Decoder, Encoder, VariationalAutoencoder, VariationalConfig
from aigc.models.layers import ConvPyramid, gaussian_kl, reparameterise
from aigc.params import spec


@dataclass(frozen=True)
class Config(ConvPyramid, VariationalConfig):
    family: ClassVar[str] = "vae"

    latent_dim: int = spec(default=16, ge=1, doc="size of z")
    width: int = spec(default=32, ge=1, doc="channels at side image_size/2, doubled per halving")
    reconstruction_loss: str = spec(default="bce", choices=("bce", "mse"), doc="pixel loss")
    beta: float = spec(default=1.0, ge=0.0, doc="weight of the KL term")
    warmup_steps: int = spec(default=1000, ge=0, doc="steps of the linear KL warm-up")
    learning_rate: float = spec(default=1e-3, gt=0.0, doc="Adam learning rate")
    beta1: float = spec(default=0.9, ge=0.0, lt=1.0, doc="Adam beta1")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_pyramid(8, "the VAE")


class VAE(VariationalAutoencoder):
    Config = Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        adam = torch.optim.Adam(self.parameters(), config.learning_rate, config.betas)
        self.optimizers = {"vae": adam}

    def private_networks(self) -> dict[str, torch.nn.Module]:
        """Encoder and decoder both see training images; one optimizer updates them."""
        return {"vae": self}

    def kl_weight(self) -> float:
        """beta_t = beta * min(1, t / warmup_steps) (linear KL warm-up)."""
        warmup = self.config.warmup_steps
        ramp = 1.0 if warmup == 0 else min(1.0, int(self.steps_done) / warmup)
        return self.config.beta * ramp

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One step on the negative ELBO, per image: reconstruction + beta_t * KL."""
        labels = self.condition(labels)
        mu, logvar = self.encoder(self.encoder_input(images, labels))
        z = reparameterise(mu, logvar)
        logits = self.decoder(self.decoder_input(z, labels)).float()

        # Per image: reconstruction summed over pixels, KL summed over latent dimensions.
        if self.config.reconstruction_loss == "bce":
            reconstruction = F.binary_cross_entropy_with_logits(logits, images, reduction="sum")
        else:
            reconstruction = F.mse_loss(torch.sigmoid(logits), images, reduction="sum")
        reconstruction = reconstruction / len(images)
        kl = gaussian_kl(mu, logvar) / len(images)
        loss = reconstruction + self.kl_weight() * kl

        self.optimize("vae", loss)
        self.steps_done += 1
        return {"loss": loss.item(), "reconstruction": reconstruction.item(), "kl": kl.item()}


MODEL = VAE
