"""Differentially private training: DP-SGD (Abadi et al. 2016, https://arxiv.org/abs/1607.00133)
with Opacus (https://opacus.ai), for the networks of a family that see training images.

`train.<family>.privacy` (`PrivacyConfig`) switches it on with a target `epsilon` (the noise
multiplier sigma is then solved for, so that the whole run spends at most epsilon at `delta`) or
a fixed `noise_multiplier`. One step of a private network's optimizer then

1. computes every sample's own gradient (Opacus's per-sample gradient hooks),
2. clips each to norm `max_grad_norm` (C), sums them, adds N(0, sigma^2 C^2) noise, and divides
   by the expected batch size (Opacus's `DPOptimizer`),
3. takes the wrapped Adam step.

What is private. A family names the optimizers whose networks see training images in
`GenerativeModel.private_networks()`: a GAN's discriminator (its generator learns only through
D, so its updates are post-processing of D's private ones; Xie et al. 2018, DPGAN), a VAE's
encoder and decoder. A GAN's D loss pairs real image i with generated image i in one per-sample
gradient; the generated half depends on no training image, so each pair still moves the sum by
at most C.

The unit of privacy is one original image. `data/train` holds each image and its augmented
copies (`origins.npy` says which rows come from which original), so the loop's `Batches` draws
Poisson batches of originals, each in with probability q = batch_size / originals, and takes one
randomly chosen version of each: an original contributes at most one row to a step, and the
accountant's Poisson subsampled Gaussian mechanism (Mironov et al. 2019) is exactly what runs.
(Shuffled fixed-size batches would not match its analysis; Chua et al. 2024,
https://arxiv.org/abs/2403.17673.)

Batch norm mixes the samples of a batch, so a per-sample gradient does not exist under it: with
`replace_batch_norm: true` (the default) the private networks are built with GroupNorm instead
(as Opacus's `ModuleValidator.fix` does); with false, training refuses to start and names the
layers. Layers that mix a batch in other ways are refused by the family's Config (the GAN's
minibatch standard deviation). The noise comes from PyTorch's seeded generator, so a private
run is reproducible on CPU and resumable; Opacus's `secure_mode` (a cryptographic generator) is
what a deployment would switch on instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from aigc.params import ParamsError, spec

__all__ = [
    "PrivacyConfig",
    "PrivateTraining",
    "check_private_networks",
    "epsilon_spent",
    "recorded_budget",
]


@dataclass(frozen=True)
class PrivacyConfig:
    """`train.<family>.privacy`: DP-SGD's budget and clipping (off when epsilon and
    noise_multiplier are both 0)."""

    epsilon: float = spec(default=0.0, ge=0.0, doc="target epsilon of the whole run (0 = off)")
    noise_multiplier: float = spec(
        default=0.0, ge=0.0, doc="sigma; > 0 fixes it instead of a target epsilon"
    )
    delta: float = spec(default=1e-5, gt=0.0, lt=1.0, doc="delta; below 1 / training images")
    max_grad_norm: float = spec(default=1.0, gt=0.0, doc="per-sample gradient norm bound C")
    accountant: str = spec(default="rdp", choices=("rdp", "prv"), doc="privacy accountant")
    replace_batch_norm: bool = spec(default=True, doc="GroupNorm for BatchNorm in private nets")

    def check(self, family: str) -> None:
        """ParamsError naming `train.<family>.privacy` when epsilon and sigma are both set."""
        if self.epsilon > 0 and self.noise_multiplier > 0:
            raise ParamsError(
                f"train.{family}.privacy.epsilon = {self.epsilon} and "
                f"train.{family}.privacy.noise_multiplier = {self.noise_multiplier} are both "
                "set; allowed: one of them, the other 0"
            )

    @property
    def enabled(self) -> bool:
        return self.epsilon > 0 or self.noise_multiplier > 0

    @property
    def group_norm(self) -> bool:
        """Whether the private networks are built with GroupNorm in place of BatchNorm."""
        return self.enabled and self.replace_batch_norm


def as_privacy_config(value: PrivacyConfig | Mapping[str, Any]) -> PrivacyConfig:
    """A checkpoint stores the config as a dict; the family's Config turns it back."""
    return value if isinstance(value, PrivacyConfig) else PrivacyConfig(**value)


def check_private_networks(networks: Mapping[str, nn.Module], family: str) -> None:
    """Refuse, naming the layers, networks that per-sample gradients cannot go through
    (Opacus's module validator: BatchNorm, which mixes a batch, above all)."""
    from opacus.validators import ModuleValidator

    for name, network in networks.items():
        was_training = network.training
        errors = ModuleValidator.validate(network.train(), strict=False)
        network.train(was_training)
        if errors:
            found = "; ".join(sorted({str(error).splitlines()[0] for error in errors}))
            raise ParamsError(
                f"train.{family}.privacy: the {name} network cannot train with DP-SGD ({found}); "
                f"allowed: train.{family}.privacy.replace_batch_norm = true (GroupNorm), or "
                "privacy off"
            )


class PrivateTraining:
    """The DP-SGD wrapping of one model for a run of `steps` steps over `items` originals drawn
    at rate q = batch_size / items: per-sample gradient hooks on its private networks (kept
    here, outside the model, so that its state dict is the plain model's), DP optimizers in
    place of theirs, and the accountant's view of the run."""

    def __init__(self, model, privacy: PrivacyConfig, items: int, batch_size: int, steps: int,
                 family: str) -> None:  # fmt: skip
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer

        if privacy.delta >= 1.0 / items:
            raise ParamsError(
                f"train.{family}.privacy.delta = {privacy.delta} is out of range; allowed: "
                f"below 1 / {items} training images = {1.0 / items:.3g}"
            )
        networks = model.private_networks()
        check_private_networks(networks, family)
        self.privacy, self.sample_rate = privacy, batch_size / items
        with warnings.catch_warnings():  # the search tries tiny sigmas, whose best order is 256
            warnings.simplefilter("ignore", UserWarning)
            self.noise_multiplier = privacy.noise_multiplier or get_noise_multiplier(
                target_epsilon=privacy.epsilon,
                target_delta=privacy.delta,
                sample_rate=self.sample_rate,
                steps=steps,
                accountant=privacy.accountant,
                epsilon_tolerance=0.01,
                **accountant_options(privacy.accountant),
            )
        self.hooks = [_grad_sample_module(network) for network in networks.values()]
        for name in networks:
            model.optimizers[name] = DPOptimizer(
                model.optimizers[name],
                noise_multiplier=self.noise_multiplier,
                max_grad_norm=privacy.max_grad_norm,
                expected_batch_size=batch_size,
            )

    def spent(self, steps: int) -> float:
        """epsilon at `privacy.delta` after `steps` noisy steps at this sample rate."""
        return epsilon_spent(
            self.noise_multiplier, self.sample_rate, steps, self.privacy.delta,
            self.privacy.accountant,
        )  # fmt: skip

    def summary(self, steps: int) -> dict[str, float | str]:
        """What the training metrics and the checkpoint record of the run's privacy."""
        return {
            "privacy_epsilon": self.spent(steps),
            "privacy_delta": self.privacy.delta,
            "privacy_noise_multiplier": self.noise_multiplier,
            "privacy_sample_rate": self.sample_rate,
            "privacy_max_grad_norm": self.privacy.max_grad_norm,
            "privacy_steps": steps,
            "privacy_accountant": self.privacy.accountant,
        }


def epsilon_spent(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "rdp"
) -> float:
    """epsilon at `delta` of `steps` Poisson-subsampled Gaussian steps (Opacus's accountants)."""
    from opacus.accountants import create_accountant

    ledger = create_accountant(accountant)
    ledger.history = [(noise_multiplier, sample_rate, steps)]
    return float(ledger.get_epsilon(delta, **accountant_options(accountant)))


def accountant_options(accountant: str) -> dict:
    """RDP orders up to 256, not Opacus's default 63: a short run at a large epsilon has its
    tightest bound above 63, and a capped search only returns a looser (still valid) one."""
    if accountant != "rdp":
        return {}
    return {"alphas": [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 257))}


def recorded_budget(checkpoint: Mapping[str, Any]) -> dict[str, float | None]:
    """The (epsilon, delta) a checkpoint's meta records, None for a model trained without
    DP-SGD; {} for no checkpoint (a row of external samples or real images)."""
    if not checkpoint:
        return {}
    meta = checkpoint.get("meta", {})
    return {key: meta.get(key) for key in ("privacy_epsilon", "privacy_delta")}


def _grad_sample_module(network: nn.Module):
    """Opacus's per-sample gradient hooks on `network`, which skip a backward pass while the
    network is frozen (a GAN's generator step runs through its frozen discriminator)."""
    from opacus import GradSampleModule
    from opacus.utils.module_utils import requires_grad

    class FrozenAware(GradSampleModule):
        def capture_backprops_hook(self, module, *args, **kwargs):
            if not requires_grad(module):
                return None
            return super().capture_backprops_hook(module, *args, **kwargs)

    # The hooks' standard note that a network's first layer gets no input gradient.
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    return FrozenAware(network, batch_first=True, loss_reduction="mean")
