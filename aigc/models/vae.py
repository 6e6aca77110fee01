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

import torch
import torch.nn.functional as F

from aigc.models.base import Decoder, Encoder, VariationalAutoencoder
from aigc.models.layers import ConvPyramid, check_labels
from aigc.params import spec


@dataclass(frozen=True)
class Config(ConvPyramid):
    image_size: int = spec(ge=8, doc="side of the square images (from the data)")
    channels: int = spec(choices=(1, 3), doc="image channels (from the data)")
    num_classes: int = spec(ge=0, doc="number of classes in the data (0 = unlabelled)")
    conditional: bool = spec(default=False, doc="a CVAE: labels enter encoder and decoder")
    latent_dim: int = spec(default=16, ge=1, doc="size of z")
    width: int = spec(default=32, ge=1, doc="channels at side image_size/2, doubled per halving")
    reconstruction_loss: str = spec(default="bce", choices=("bce", "mse"), doc="pixel loss")
    beta: float = spec(default=1.0, ge=0.0, doc="weight of the KL term")
    warmup_steps: int = spec(default=1000, ge=0, doc="steps of the linear KL warm-up")
    learning_rate: float = spec(default=1e-3, gt=0.0, doc="Adam learning rate")
    beta1: float = spec(default=0.9, ge=0.0, lt=1.0, doc="Adam beta1")
    beta2: float = spec(default=0.999, ge=0.0, lt=1.0, doc="Adam beta2")

    def __post_init__(self) -> None:
        self.check_pyramid("vae", 8, "the VAE")


class VAE(VariationalAutoencoder):
    Config = Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))  # for the warm-up
        betas = (config.beta1, config.beta2)
        self.optimizers = {"vae": torch.optim.Adam(self.parameters(), config.learning_rate, betas)}

    def kl_weight(self) -> float:
        """beta_t = beta * min(1, t / warmup_steps) (linear KL warm-up)."""
        warmup = self.config.warmup_steps
        ramp = 1.0 if warmup == 0 else min(1.0, int(self.steps_done) / warmup)
        return self.config.beta * ramp

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        labels = labels if self.config.conditional else None
        if labels is not None:
            check_labels(labels, self.config.num_classes)
        mu, logvar = self.encoder(self._encoder_input(images, labels))
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparameterisation
        logits = self.decoder(self._decoder_input(z, labels)).float()

        # Per image: reconstruction summed over pixels, KL summed over latent dimensions
        # (Kingma & Welling 2014, appendix B: KL = -1/2 sum(1 + logvar - mu^2 - exp(logvar))).
        if self.config.reconstruction_loss == "bce":
            reconstruction = F.binary_cross_entropy_with_logits(logits, images, reduction="sum")
        else:
            reconstruction = F.mse_loss(torch.sigmoid(logits), images, reduction="sum")
        reconstruction = reconstruction / len(images)
        mu, logvar = mu.float(), logvar.float()
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(images)
        weight = self.kl_weight()
        loss = reconstruction + weight * kl

        optimizer = self.optimizers["vae"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.steps_done += 1
        return {"loss": loss.item(), "reconstruction": reconstruction.item(), "kl": kl.item()}


MODEL = VAE
