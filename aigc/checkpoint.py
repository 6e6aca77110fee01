"""Checkpoints: the one place that saves and loads them.

A checkpoint is a dict of plain values (tensors, dicts, lists, str, int, float, bool, None)
written atomically with `torch.save` and read with `torch.load(weights_only=True)`, so loading a
file never runs code from it. Anything else — a corrupt or truncated file, a pickled object, a
plain state_dict, a text file, another version — raises `CheckpointError` with one line naming
the file.

The payload of a model checkpoint:

    {"format": "aigc-checkpoint", "version": 1,
     "family": "dcgan", "config": asdict(model.config),
     "model": model.state_dict(), "ema": generator state_dict or None,
     "optimizers": {name: optimizer.state_dict()}, "step": int, "epoch": int,
     "rng": {"torch": ..., "cuda": [...], ...},
     "meta": {"steps": ..., "classes": [...], ...}}

Timings are not in a final checkpoint (they differ between two otherwise identical runs and
would change its hash); a resume checkpoint keeps `meta.train_seconds` to add up across resumes.

Other checkpoints (the evaluator's) use the same envelope with their own `family`.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from aigc.files import write_bytes

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "config_dict",
]

FORMAT = "aigc-checkpoint"
VERSION = 1
REQUIRED = ("family", "config", "model")


class CheckpointError(ValueError):
    """A file that is not a readable aigc checkpoint; the message is one line naming it."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` (plus the format and version marks) to `path`, atomically."""
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {', '.join(missing)}")
    _check_plain(payload, "payload")
    # Through memory, not straight to the temporary file: torch.save names the zip's records
    # after the file it writes, and a random temporary name would make two identical
    # checkpoints differ in their bytes (and so in DVC's hash of them).
    buffer = io.BytesIO()
    torch.save({**payload, "format": FORMAT, "version": VERSION}, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The payload saved at `path`, loaded without unpickling code; `CheckpointError` if not."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many kinds for a bad file; all mean the same here
        raise CheckpointError(f"{path}: not a readable aigc checkpoint: {_reason(error)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        kind = "a plain state_dict" if _looks_like_state_dict(payload) else type(payload).__name__
        raise CheckpointError(
            f"{path}: not an aigc checkpoint (found {kind}, no format mark {FORMAT!r})"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')!r}; this code reads {VERSION}"
        )
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return payload


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model saved at `path`: (model in eval mode on `device`, checkpoint dict).

    The model comes from `MODELS[family].Config(**config)`; when the checkpoint holds EMA
    weights of the sampling network, those replace the generator's raw weights (they sample better).
    """
    from aigc.models import MODELS  # here, not at the top: the models import this module's users

    checkpoint = load_checkpoint(path, map_location="cpu")
    family = checkpoint["family"]
    if family not in MODELS:
        raise CheckpointError(
            f"{path}: unknown model family {family!r}; known: {', '.join(MODELS)}"
        )
    model_class = MODELS[family]
    try:
        config = model_class.Config(**checkpoint["config"])
        model = model_class(config)
        model.load_state_dict(checkpoint["model"])
        if checkpoint.get("ema") is not None:
            model.sampling_network.load_state_dict(checkpoint["ema"])
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise CheckpointError(
            f"{path}: {family} checkpoint does not fit this code: {_first_line(error)}"
        ) from None
    return model.to(device).eval(), checkpoint


def config_dict(config: Any) -> dict[str, Any]:
    """A model Config as the plain dict a checkpoint stores."""
    return dataclasses.asdict(config)


PLAIN = (torch.Tensor, str, int, float, bool, type(None), torch.Size)


def _check_plain(value: Any, where: str) -> None:
    """Refuse to save what `torch.load(weights_only=True)` would refuse to load."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint {where}: key {key!r} is not a str or int")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif type(value) not in PLAIN and not isinstance(value, torch.Tensor):
        raise TypeError(
            f"checkpoint {where} is a {type(value).__name__}; only tensors, dicts, lists, "
            "str, int, float, bool and None load with weights_only=True"
        )


def _looks_like_state_dict(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(item, torch.Tensor) for item in value.values())
    )


def _reason(error: BaseException) -> str:
    """Why torch.load refused a file, in a few words."""
    text = str(error)
    found = re.search(r"GLOBAL (\S+)", text)
    if found:
        return f"it pickles the Python object {found.group(1)} (refused, not run)"
    if isinstance(error, pickle.UnpicklingError):
        return "not a torch file of plain values (refused by the safe loader)"
    return f"corrupt or truncated ({_first_line(error)})"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 100 else text[:97] + "..."
