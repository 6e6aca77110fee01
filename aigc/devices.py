"""Where a network runs, and in what precision: the one place that decides it.

- `resolve_device(name, setting)`: `auto` is CUDA when present, else CPU; `cuda` without a
  CUDA device is a `ParamsError` naming the params key that asked for it.
- `precision_context(device, precision)`: bf16 autocast on CUDA (or when asked), else a no-op
  context, so the same code runs in fp32 on a CPU (nanoGPT's `nullcontext()` habit).

The training loop and the evaluator both use them; this module imports no model family, so
the evaluator's stage does not depend on the models' files.
"""

from __future__ import annotations

import contextlib

import torch

from aigc.params import ParamsError

__all__ = ["DEVICES", "PRECISIONS", "resolve_device", "precision_context", "memory_format"]

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str, setting: str = "device") -> torch.device:
    """The torch device for a params value in DEVICES; `setting` names its key in messages."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"{setting} = 'cuda' but no CUDA device is available; allowed: auto, cpu")
    return torch.device(name)


def precision_context(device: torch.device, precision: str):
    """bf16 autocast on CUDA (or when asked), else a no-op context (fp32)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA (faster convolutions with tensor cores), the default elsewhere."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format
