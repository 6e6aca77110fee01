"""Shared test fixtures: a project folder with tiny params, synthetic images.

`tiny_params()` is the repository's params.yaml with every size shrunk so a stage runs in
seconds on CPU; `project` is a temp folder holding the pipeline files and those params.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Overrides applied to params.yaml for tests: the `shapes` source at 16x16, tiny models.
TINY = {
    "models": ["gan", "dcgan", "vae", "vaegan", "ddpm"],
    "data": {"source": "shapes", "image_size": 16, "shapes_per_class": 40},
    "augment": {"batch_size": 256, "preview": 4},
    "evaluator": {"epochs": 2, "patience": 1, "batch_size": 64, "width": 8, "embedding_dim": 16},
    "train": {
        "common": {"log_every": 2, "checkpoint_every": 4},
        "gan": {
            "epochs": 1,
            "steps": 0,
            "batch_size": 32,
            "latent_dim": 8,
            "width": 16,
            "discriminator_width": 8,
        },
        "dcgan": {"epochs": 1, "steps": 0, "batch_size": 32, "latent_dim": 8, "width": 8},
        "vae": {
            "epochs": 1,
            "steps": 0,
            "batch_size": 32,
            "latent_dim": 4,
            "width": 8,
            "warmup_steps": 4,
        },
        "vaegan": {"epochs": 1, "steps": 0, "batch_size": 32, "latent_dim": 4, "width": 8},
        "ddpm": {
            "epochs": 1,
            "steps": 0,
            "batch_size": 32,
            "width": 8,
            "channel_multipliers": [1, 2],
            "attention_resolutions": [8],
            "timesteps": 50,
        },
    },
    "sample": {"num_samples": 64, "batch_size": 32, "steps": 5},
    "evaluate": {"batch_size": 64, "kid_subsets": 5, "kid_subset_size": 32},
}


def merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` merged in, recursively (returns a new dict)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def tiny_params(overrides: dict | None = None) -> dict:
    """The repository's params with TINY (and then `overrides`) merged in."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    return merge(merge(params, TINY), overrides or {})


def write_params(folder: Path, overrides: dict | None = None) -> Path:
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(overrides), sort_keys=False))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A temp folder with the pipeline files and tiny params, as the working directory."""
    for name in ("dvc.yaml", "stages", "aigc"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    write_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_images(count: int, channels: int = 1, size: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth random uint8 images (N, C, H, W): blobs, not white noise."""
    generator = np.random.default_rng(seed)
    coarse = generator.integers(0, 256, size=(count, channels, 4, 4)).astype(np.float32)
    fine = np.repeat(np.repeat(coarse, size // 4, axis=2), size // 4, axis=3)
    return np.clip(fine + generator.normal(0, 8, fine.shape), 0, 255).astype(np.uint8)
