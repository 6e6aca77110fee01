"""The interface every model family implements (see `aigc.models` for the contract)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


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
