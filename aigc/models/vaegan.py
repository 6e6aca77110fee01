"""VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric",
https://arxiv.org/abs/1512.09300): a VAE whose decoder is also a GAN's generator.

Three networks: the encoder maps an image x to q(z | x) = N(mu, sigma^2) (mu, logvar are
(B, latent_dim)); the decoder maps z to pixel logits (it is the generator: samples decode
z ~ N(0, I), the prior); the discriminator sees real images, reconstructions x~ = Dec(z) and
prior samples x_p = Dec(z_p) and gives a logit and its last conv features Dis_l(x).

Losses (Larsen et al. section 2.2 and algorithm 1), all per pixel or per feature so that the
weights compare:

    reconstruction = BCE(x~, x)                     (the VAE's pixel likelihood)
    kl             = KL(q(z | x) || N(0, I)) / pixels   (so beta = 1 is the ELBO per pixel)
    feature        = mean (Dis_l(x~) - Dis_l(x))^2    (the "learned similarity", their L_llike)
    adversarial    = -log D(x~) - log D(x_p)          (non-saturating, layers.generator_loss)
    d_loss         = -log D(x) - log(1 - D(x~)) - log(1 - D(x_p))

    encoder       minimises reconstruction + feature_weight * feature + beta * kl
    decoder       minimises reconstruction + feature_weight * feature + adversarial_weight * adv
    discriminator minimises d_loss

As in the paper, the encoder gets no adversarial gradient and the discriminator only its GAN
loss. The first `adversarial_start` steps train the VAE alone (reconstruction + beta * kl; no
discriminator, so a step costs about a quarter as much), and the discriminator, the feature
and the adversarial terms join after them: a warm start like VQGAN's (Esser et al. 2021,
https://arxiv.org/abs/2012.09841, whose discriminator starts after a number of steps), so the
GAN sharpens a decoder that already draws garments instead of a decoder that draws noise, and
the budget buys about three times as many images seen.

`conditional: true` gives the encoder one-hot label maps beside the image channels, the decoder
a one-hot label beside z (as the CVAE in vae.py) and the discriminator a projection term
(layers.ClassProjection). `spectral_norm` normalises every layer of the discriminator (Miyato
et al. 2018), which bounds how sharply its features, the decoder's feature-matching target,
can change with the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from aigc.models.base import (
    Decoder,
    Encoder,
    VariationalAutoencoder,
    VariationalConfig,
    downsampling,
)
from aigc.models.layers import (
    ClassProjection,
    ConvPyramid,
    d_scores,
    discriminator_loss,
    frozen,
    gaussian_kl,
    generator_loss,
    reparameterise,
    with_spectral_norm,
)
from aigc.params import spec


@dataclass(frozen=True)
class Config(ConvPyramid, VariationalConfig):
    family: ClassVar[str] = "vaegan"
    cannot_train_privately: ClassVar[str] = (
        "its decoder's per-sample gradient holds a reconstruction and a prior sample per "
        "training image, so one image moves the clipped sum by up to twice the bound"
    )

    latent_dim: int = spec(default=32, ge=1, doc="size of z")
    width: int = spec(default=32, ge=1, doc="channels at side image_size/2, doubled per halving")
    beta: float = spec(default=1.0, ge=0.0, doc="weight of the KL term")
    adversarial_weight: float = spec(default=0.05, ge=0.0, doc="GAN term in the decoder's loss")
    feature_weight: float = spec(default=1.0, ge=0.0, doc="discriminator-feature matching term")
    adversarial_start: int = spec(
        default=0, ge=0, doc="steps of VAE-only training before the discriminator joins"
    )
    spectral_norm: bool = spec(default=False, doc="spectral norm on D's layers")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_pyramid(8, "the VAE-GAN")


class Discriminator(nn.Module):
    """Images (B, C, H, W) in [-1, 1] -> (logits (B,), features (B, F)). No batch norm: an
    image's features, the feature-matching target, must not depend on the rest of its batch."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        norm = config.spectral_norm
        self.features = nn.Sequential(
            *(
                with_spectral_norm(layer, norm) if isinstance(layer, nn.Conv2d) else layer
                for layer in downsampling(config, config.channels, batch_norm=False)
            )
        )
        features = config.channels_at(4) * 16
        self.head = with_spectral_norm(nn.Linear(features, 1), norm)
        self.projection = None
        if config.conditional:
            self.projection = ClassProjection(config.num_classes, features, spectral_norm=norm)

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(images)  # (B, 16 channels_at(4))
        logits = self.head(features).squeeze(1)
        if self.projection is not None:
            logits = logits + self.projection(features, labels)
        return logits, features


class VAEGAN(VariationalAutoencoder):
    Config = Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.discriminator = Discriminator(config)
        self.optimizers = {
            name: torch.optim.Adam(
                getattr(self, name).parameters(), config.learning_rate, config.betas
            )
            for name in ("encoder", "decoder", "discriminator")
        }

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One update of D, then of encoder and decoder (Larsen et al. 2016, algorithm 1); before
        `adversarial_start`, one VAE step."""
        config = self.config
        labels = self.condition(labels)
        self.steps_done += 1
        if int(self.steps_done) <= config.adversarial_start:
            return self.vae_step(images, labels)
        count = len(images)
        mu, logvar = self.encoder(self.encoder_input(images, labels))
        z = reparameterise(mu, logvar)
        z_prior = torch.randn_like(mu)
        both_labels = torch.cat([labels, labels]) if labels is not None else None
        # Reconstructions and prior samples in one decoder batch: (2B, C, H, W) logits.
        logits = self.decoder(self.decoder_input(torch.cat([z, z_prior]), both_labels)).float()
        fakes = torch.sigmoid(logits) * 2 - 1  # (2B, C, H, W) in [-1, 1], as D sees real ones
        real = images * 2 - 1

        # Discriminator: tell real images from reconstructions and prior samples.
        real_logits, _ = self.discriminator(real, labels)
        fake_logits, _ = self.discriminator(fakes.detach(), both_labels)
        d_loss = discriminator_loss(real_logits, fake_logits)
        self.optimize("discriminator", d_loss)

        # Encoder and decoder, against the updated discriminator (frozen here).
        with frozen(self.discriminator):
            with torch.no_grad():
                _, real_features = self.discriminator(real, labels)
            fake_logits_now, fake_features = self.discriminator(fakes, both_labels)
            reconstruction = F.binary_cross_entropy_with_logits(logits[:count], images)
            feature = F.mse_loss(fake_features[:count].float(), real_features.float())
            kl = gaussian_kl(mu, logvar) / images[0].numel() / count  # per image, then per pixel
            adversarial = generator_loss(fake_logits_now)
            shared = reconstruction + config.feature_weight * feature
            for name in ("encoder", "decoder"):
                self.optimizers[name].zero_grad(set_to_none=True)
            (shared + config.beta * kl).backward(retain_graph=True)  # encoder and decoder
            # The adversarial term reaches the decoder only (Larsen et al.: no GAN gradient
            # into the encoder).
            adversarial_loss = config.adversarial_weight * adversarial
            adversarial_loss.backward(inputs=list(self.decoder.parameters()))
            self.optimizers["encoder"].step()
            self.optimizers["decoder"].step()

        return {
            "reconstruction": reconstruction.item(),
            "kl": kl.item(),
            "feature": feature.item(),
            "g_loss": adversarial.item(),
            "d_loss": d_loss.item(),
        } | d_scores(real_logits, fake_logits)

    def vae_step(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        """Encoder and decoder on reconstruction + beta * kl, the units of `train_step`."""
        mu, logvar = self.encoder(self.encoder_input(images, labels))
        logits = self.decoder(self.decoder_input(reparameterise(mu, logvar), labels)).float()
        reconstruction = F.binary_cross_entropy_with_logits(logits, images)
        kl = gaussian_kl(mu, logvar) / images[0].numel() / len(images)
        for name in ("encoder", "decoder"):
            self.optimizers[name].zero_grad(set_to_none=True)
        (reconstruction + self.config.beta * kl).backward()
        self.optimizers["encoder"].step()
        self.optimizers["decoder"].step()
        return {"reconstruction": reconstruction.item(), "kl": kl.item()}


MODEL = VAEGAN
