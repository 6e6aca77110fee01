"""The model families, chosen by name from `MODELS`.

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

from aigc.models import dcgan, ddpm, gan, vae, vaegan
from aigc.models.base import GenerativeModel

MODELS: dict[str, type[GenerativeModel]] = {
    "gan": gan.MODEL,
    "dcgan": dcgan.MODEL,
    "vae": vae.MODEL,
    "vaegan": vaegan.MODEL,
    "ddpm": ddpm.MODEL,
}


def build_model(family: str, config) -> GenerativeModel:
    """A fresh model of `family` from its config dataclass."""
    if family not in MODELS:
        raise ValueError(f"unknown model family {family!r}; allowed: {', '.join(MODELS)}")
    return MODELS[family](config)
