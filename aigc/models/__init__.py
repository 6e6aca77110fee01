"""The model families, chosen by name from `MODELS` (a family's file is imported on lookup).

Every family is an `nn.Module` subclass of `GenerativeModel` with the same small interface:

- `Config`: a frozen dataclass of its shape and optimiser settings (built from params.yaml's
  `train.<family>` section plus `image_size`, `channels`, `num_classes` derived from the data).
  The checkpoint stores it, so `sample`/`evaluate` rebuild the model from the checkpoint alone.
- `train_step(images, labels) -> {"name": float, ...}`: one optimisation step on a batch of
  float images in [0, 1], shaped (B, C, H, W), and int64 labels (B,) (-1 = unlabelled). The model
  owns its optimizers (`self.optimizers`, a dict name -> torch.optim.Optimizer).
- `sample(n, labels=None, generator=None) -> (n, C, H, W) float images in [0, 1]`.
- `generator`: the submodule `sample` runs (its weights are what EMA averages).
- Families that encode also have `reconstruct(images, labels=None) -> images in [0, 1]` and
  `encode`/`decode` for latent interpolation; `latent_dim` names the latent size.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aigc.models.base import GenerativeModel


class FamilyRegistry(Mapping):
    """Family name -> model class, importing a family's module only when it is looked up.

    A stage that trains, samples or evaluates one family then loads that family's file and no
    other, so its `deps:` in dvc.yaml can name exactly the files it runs (tests/test_deps.py
    checks this). Each module defines its class as `MODEL`.
    """

    def __init__(self, modules: dict[str, str]) -> None:
        self._modules = dict(modules)

    def __getitem__(self, family: str) -> type[GenerativeModel]:
        return importlib.import_module(self._modules[family]).MODEL

    def __contains__(self, family: object) -> bool:  # without importing anything
        return family in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


MODELS: Mapping[str, type[GenerativeModel]] = FamilyRegistry(
    {
        "gan": "aigc.models.gan",
        "dcgan": "aigc.models.dcgan",
        "vae": "aigc.models.vae",
        "vaegan": "aigc.models.vaegan",
        "ddpm": "aigc.models.ddpm",
    }
)


def build_model(family: str, config) -> GenerativeModel:
    """A fresh model of `family` from its config dataclass."""
    if family not in MODELS:
        raise ValueError(f"unknown model family {family!r}; allowed: {', '.join(MODELS)}")
    return MODELS[family](config)
