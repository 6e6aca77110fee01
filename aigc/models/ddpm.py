"""DDPM: a U-Net denoiser trained on a noise schedule (Ho et al. 2020,
https://arxiv.org/abs/2006.11239), sampled with DDIM or ancestrally.

Training (Ho et al. algorithm 1): x0 in [-1, 1], t ~ U{0..T-1}, eps ~ N(0, I),
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, loss = w(t) || target - U-Net(x_t, t) ||^2 with
target eps (`prediction: eps`) or v (`prediction: v`, Salimans & Ho 2022) and w(t) = 1 or the
Min-SNR-gamma weights (Hang et al. 2023). Adam, gradient norm clipped at 1 as in Ho et al.'s
code. On a CPU budget (1500 steps of 64 images), v-prediction with Min-SNR-5 gives clean
garment shapes where the plain eps loss still gives bright, noisy blobs (measured on
Fashion-MNIST). The loop keeps the EMA of the U-Net's weights (`ema_decay`); sampling uses it.

Sampling (`configure_sampling`): DDIM with `steps` and `eta` (Song et al. 2021), DPM-Solver++(2M)
with `steps` (Lu et al. 2022) or DDPM ancestral over all T steps; see aigc/diffusion.py.

`conditional`: the U-Net reads the class through cross-attention (aigc/models/unet.py); during
training each label is replaced by the learned null class with probability `label_dropout`, and
sampling uses classifier-free guidance with `guidance_scale` s (Ho & Salimans 2022):
out = out(null) + s (out(y) - out(null)); s = 0 is unconditional, s = 1 conditional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from aigc.diffusion import (
    PREDICTIONS,
    SAMPLERS,
    SCHEDULES,
    NoiseSchedule,
    ddim_sample,
    ddpm_sample,
    dpm_solver_sample,
    guided_output,
)
from aigc.models.base import ImageConfig, ImageModel
from aigc.models.layers import check_labels, sampling_labels
from aigc.models.unet import UNet
from aigc.params import ParamsError, spec

GRADIENT_CLIP = 1.0  # max global gradient norm (Ho et al.'s implementation)
MEMBERSHIP_TIMESTEPS = 10  # timesteps the membership score averages the denoising loss over


@dataclass(frozen=True)
class Config(ImageConfig):
    family: ClassVar[str] = "ddpm"

    patch_size: int = spec(default=1, ge=1, doc="pixels per side folded into channels")
    width: int = spec(default=32, ge=1, doc="channels of the first U-Net level")
    channel_multipliers: tuple[int, ...] = spec(default=(1, 2, 2), ge=1, doc="per level")
    blocks_per_level: int = spec(default=1, ge=1, doc="residual blocks per level")
    attention_resolutions: tuple[int, ...] = spec(default=(8,), ge=1, doc="sides with attention")
    norm_groups: int = spec(default=8, ge=1, doc="GroupNorm groups")
    timesteps: int = spec(default=1000, ge=2, doc="diffusion steps T")
    schedule: str = spec(default="cosine", choices=SCHEDULES, doc="noise schedule")
    prediction: str = spec(default="eps", choices=PREDICTIONS, doc="what the U-Net predicts")
    min_snr_gamma: float = spec(default=0.0, ge=0.0, doc="Min-SNR loss weighting (0 = off)")
    label_dropout: float = spec(default=0.1, ge=0.0, le=1.0, doc="P(label -> null) in training")
    beta1: float = spec(default=0.9, ge=0.0, lt=1.0, doc="Adam beta1")

    def __post_init__(self) -> None:
        super().__post_init__()
        # A checkpoint's config comes back with lists; the dataclass is frozen and hashable.
        for name in ("channel_multipliers", "attention_resolutions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.channel_multipliers:
            raise ParamsError("train.ddpm.channel_multipliers = [] is not allowed; give >= 1 level")
        levels = len(self.channel_multipliers)
        if self.image_size % self.patch_size:
            raise ParamsError(
                f"train.ddpm.patch_size = {self.patch_size} does not divide image_size "
                f"{self.image_size} (data.image_size)"
            )
        if (self.image_size // self.patch_size) % 2 ** (levels - 1):
            raise ParamsError(
                f"train.ddpm.channel_multipliers: {levels} levels halve the side "
                f"{self.image_size // self.patch_size} {levels - 1} times, which it does not allow "
                f"(image_size {self.image_size}, patch_size {self.patch_size})"
            )
        sides = self.sides()
        for side in self.attention_resolutions:
            if side not in sides:
                raise ParamsError(
                    f"train.ddpm.attention_resolutions: {side} is not a feature-map side of "
                    f"this U-Net; allowed: {', '.join(map(str, sides))}"
                )
        widths = [self.width * m for m in self.channel_multipliers]
        if any(w % self.norm_groups for w in widths):
            raise ParamsError(
                f"train.ddpm.width = {self.width} is not allowed: every level's channels "
                f"({', '.join(map(str, widths))}) must be divisible by "
                f"train.ddpm.norm_groups = {self.norm_groups}"
            )
        if self.width % 2:
            raise ParamsError(
                f"train.ddpm.width = {self.width} is not allowed: the time embedding needs an "
                "even width"
            )

    def sides(self) -> list[int]:
        """Feature-map sides of the U-Net's levels: image_size / patch_size, then halved."""
        side = self.image_size // self.patch_size
        return [side // 2**i for i in range(len(self.channel_multipliers))]


class DDPM(ImageModel):
    Config = Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.schedule = NoiseSchedule(config.timesteps, config.schedule, config.prediction)
        self.unet = UNet(
            channels=config.channels,
            width=config.width,
            channel_multipliers=config.channel_multipliers,
            blocks_per_level=config.blocks_per_level,
            attention_resolutions=config.attention_resolutions,
            image_size=config.image_size,
            norm_groups=config.norm_groups,
            patch_size=config.patch_size,
            num_classes=config.num_classes if config.conditional else 0,
        )
        self.optimizers = {
            "unet": torch.optim.Adam(self.unet.parameters(), config.learning_rate, config.betas)
        }
        self.configure_sampling(steps=min(25, config.timesteps))

    @property
    def sampling_network(self) -> nn.Module:
        return self.unet

    def configure_sampling(
        self, sampler: str = "ddim", steps: int = 25, eta: float = 0.0, guidance_scale: float = 1.0
    ) -> None:
        """DDIM with `steps` and `eta`, DPM-Solver++(2M) with `steps` (`eta` unused), or DDPM
        ancestral over all T steps (`steps`, `eta` unused); `guidance_scale` for a conditional
        model (1 = plain conditional)."""
        if sampler not in SAMPLERS:
            raise ParamsError(
                f"sample.sampler = {sampler!r} is not allowed; allowed: {', '.join(SAMPLERS)}"
            )
        if sampler != "ddpm" and not 1 <= steps <= self.config.timesteps:
            raise ParamsError(
                f"sample.steps = {steps} is out of range; allowed: 1 to "
                f"train.ddpm.timesteps = {self.config.timesteps}"
            )
        self.sampler, self.steps = sampler, steps
        self.eta, self.guidance_scale = eta, guidance_scale

    # -- training --------------------------------------------------------------------------------

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The simple objective (Ho et al. eq. 14), E w(t) || target - U-Net(x_t, t) ||^2, with
        w(t) = 1 or the Min-SNR weights (`min_snr_gamma`)."""
        t = torch.randint(0, self.config.timesteps, (len(images),), device=images.device)
        noise = torch.randn_like(images)
        condition = None
        if self.config.conditional:
            # Unlabelled items (-1) and a label_dropout share of the rest train the null class.
            check_labels(labels[labels >= 0], self.config.num_classes)
            null = torch.full_like(labels, self.config.num_classes)
            drop = torch.rand(len(labels), device=labels.device) < self.config.label_dropout
            condition = torch.where(drop | (labels < 0), null, labels)
        return self.image_losses(images, t, noise, condition).mean()

    def image_losses(
        self, images: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, condition
    ) -> torch.Tensor:
        """w(t) || target - U-Net(x_t, t) ||^2 per image (B,), x_t from images in [0, 1]."""
        x0 = images * 2 - 1  # (B, C, H, W) in [-1, 1]
        output = self.unet(self.schedule.q_sample(x0, t, noise), t, condition)
        errors = (output.float() - self.schedule.target(x0, noise, t)).pow(2).flatten(1).mean(1)
        return self.schedule.loss_weights(t, self.config.min_snr_gamma) * errors

    @torch.no_grad()
    def membership_scores(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Minus the denoising loss per image, averaged over MEMBERSHIP_TIMESTEPS evenly spaced
        t with noise fixed per image position (the loss-threshold attack on diffusion models
        of Carlini et al. 2023, https://arxiv.org/abs/2301.13188)."""
        images = images.to(self.device)
        condition = sampling_labels(self.config, len(images), labels, self.device)
        rng = torch.Generator().manual_seed(0)
        total = torch.zeros(len(images), device=self.device)
        steps = torch.linspace(0, self.config.timesteps - 1, MEMBERSHIP_TIMESTEPS).long()
        for step in steps.tolist():
            noise = torch.randn(images.shape, generator=rng).to(self.device)
            t = torch.full((len(images),), step, device=self.device, dtype=torch.long)
            total += self.image_losses(images, t, noise, condition)
        return -total / len(steps)

    def private_networks(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One Adam step on the denoising loss, the gradient norm clipped at GRADIENT_CLIP."""
        loss = self.loss(images, labels)
        optimizer = self.optimizers["unet"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.unet.parameters(), GRADIENT_CLIP)
        optimizer.step()
        return {"loss": loss.item(), "grad_norm": norm.item()}

    # -- sampling --------------------------------------------------------------------------------

    def denoiser(self, labels: torch.Tensor | None):
        """The callable (x_t, t) -> eps or v that the sampler runs: the U-Net, with classifier-free
        guidance at `guidance_scale` when conditional."""
        if labels is None:
            return lambda xt, t: self.unet(xt, t)
        null = torch.full_like(labels, self.config.num_classes)

        def guided(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return guided_output(self.unet, xt, t, labels, null, self.guidance_scale)

        return guided

    @torch.no_grad()
    def sample(self, n, labels=None, rng=None) -> torch.Tensor:
        labels = sampling_labels(self.config, n, labels, self.device)
        denoiser = self.denoiser(labels)
        shape = (n, self.config.channels, self.config.image_size, self.config.image_size)
        if self.sampler == "ddpm":
            x0 = ddpm_sample(self.schedule, denoiser, shape, rng, self.device)
        elif self.sampler == "dpmpp_2m":
            x0 = dpm_solver_sample(self.schedule, denoiser, shape, self.steps, rng, self.device)
        else:
            x0 = ddim_sample(self.schedule, denoiser, shape, self.steps, self.eta, rng, self.device)
        return ((x0.float() + 1) / 2).clamp(0, 1)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """x_T, the noise the sampler starts from."""
        return (self.config.channels, self.config.image_size, self.config.image_size)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images from given x_T by a deterministic sampler (DPM-Solver++(2M) when configured, else
        DDIM at eta = 0, the configured steps), so that nearby noise gives nearby images whichever
        sampler `sample` uses."""
        labels = sampling_labels(self.config, len(latents), labels, self.device)
        if self.sampler == "dpmpp_2m":
            x0 = dpm_solver_sample(
                self.schedule,
                self.denoiser(labels),
                tuple(latents.shape),
                self.steps,
                device=self.device,
                start=latents,
            )
            return ((x0.float() + 1) / 2).clamp(0, 1)
        x0 = ddim_sample(
            self.schedule,
            self.denoiser(labels),
            tuple(latents.shape),
            self.steps if self.sampler == "ddim" else min(25, self.config.timesteps),
            eta=0.0,
            device=self.device,
            start=latents,
        )
        return ((x0.float() + 1) / 2).clamp(0, 1)


MODEL = DDPM
