"""The model families, chosen by name from `MODELS` (a family's file is imported on lookup).

`MODELS[name]` is the family's class, a subclass of `GenerativeModel`; the contract every family
keeps (Config, modality, train_step, sample, preview, sampling_network, encode/reconstruct,
configure_sampling) is declared in `aigc/models/base.py`, with the image half (`ImageModel`)
there and the text half (`TextModel`) in `aigc/models/text/base.py`. To add a family: one file
defining `MODEL`, one line below, one `train.<name>` section in params.yaml, and its name in
`models` (an image family) or `text_models` (a text family).
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
    checks this). Each module defines its class as `MODEL`; `modules` maps name -> module.
    """

    def __init__(self, modules: dict[str, str]) -> None:
        self.modules = dict(modules)

    def __getitem__(self, family: str) -> type[GenerativeModel]:
        return importlib.import_module(self.modules[family]).MODEL

    def __contains__(self, family: object) -> bool:  # without importing anything
        return family in self.modules

    def __iter__(self) -> Iterator[str]:
        return iter(self.modules)

    def __len__(self) -> int:
        return len(self.modules)


MODELS: Mapping[str, type[GenerativeModel]] = FamilyRegistry(
    {
        "gan": "aigc.models.gan",
        "dcgan": "aigc.models.dcgan",
        "vae": "aigc.models.vae",
        "vaegan": "aigc.models.vaegan",
        "ddpm": "aigc.models.ddpm",
        "charrnn": "aigc.models.text.charrnn",
        "textvae": "aigc.models.text.textvae",
        "gpt": "aigc.models.text.gpt",
    }
)


def build_model(family: str, config) -> GenerativeModel:
    """A fresh model of `family` from its config dataclass."""
    if family not in MODELS:
        raise ValueError(f"unknown model family {family!r}; allowed: {', '.join(MODELS)}")
    return MODELS[family](config)
