"""Shared test fixtures: a project folder with tiny params, synthetic images.

`tiny_params()` is the repository's params.yaml with every size shrunk so a stage runs in
seconds on CPU; `project` is a temp folder holding the pipeline files and those params.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from aigc.features import EvaluatorParams, train_evaluator
from aigc.imagesets import ImageSet
from aigc.text_sets import TextSet, Vocabulary, save_text_set

REPO = Path(__file__).resolve().parents[1]

# Overrides applied to params.yaml for tests: the `shapes` source at 16x16, tiny models.
TINY = {
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
        "charrnn": {"steps": 4, "batch_size": 16, "hidden_size": 16, "layers": 1, "window": 32},
        "textvae": {
            "steps": 4,
            "batch_size": 16,
            "latent_dim": 4,
            "hidden_size": 16,
            "embedding_dim": 8,
            "kl_warmup_steps": 2,
        },
        "gpt": {  # the tiny corpus (a file: source) has no classes to condition on
            "steps": 4,
            "batch_size": 16,
            "layers": 1,
            "heads": 2,
            "width": 16,
            "context": 32,
            "conditional": False,
        },
    },
    "text": {"source": "file:corpus.txt", "classes": []},  # written by the project fixture
    "text_sample": {"num_samples": 24, "batch_size": 12},
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
    (tmp_path / "corpus.txt").write_text(tiny_corpus())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tiny_corpus(count: int = 60, seed: int = 0) -> str:
    """`count` short %-separated texts made by a seeded template: the text branch's test data."""
    generator = np.random.default_rng(seed)
    subjects = ["The cat", "A wise owl", "My computer", "The river", "Every poet", "Our teacher"]
    verbs = ["dreams of", "argues with", "forgets", "paints", "counts", "sings to"]
    objects = ["the moon", "seven apples", "a quiet lake", "old friends", "the future", "rain"]
    texts = [
        f"{generator.choice(subjects)} {generator.choice(verbs)} {generator.choice(objects)}, "
        f"and {generator.choice(subjects).lower()} {generator.choice(verbs)} "
        f"{generator.choice(objects)} number {index}."
        for index in range(count)
    ]
    return "\n%\n".join(texts) + "\n"


def run_command(*command: str, cwd: Path) -> str:
    """Run a command with the test's Python first on PATH; return stdout+stderr, fail loudly."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(DVC_NO_ANALYTICS="1", DVC_STUDIO_OFFLINE="1", OMP_NUM_THREADS="2")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-4000:]}"
    return output


@pytest.fixture
def repository(project):
    """`project` as a git repository with DVC initialised and everything committed."""
    for command in (
        ("git", "init", "-q"),
        ("git", "config", "user.email", "test@example.com"),
        ("git", "config", "user.name", "test"),
        ("dvc", "init", "-q"),
        ("dvc", "config", "core.analytics", "false"),
    ):
        run_command(*command, cwd=project)
    (project / ".gitignore").write_text("/.resume/\n__pycache__/\n")
    run_command("git", "add", "-A", cwd=project)
    run_command("git", "commit", "-qm", "tiny pipeline", cwd=project)
    return project


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_images(count: int, channels: int = 1, size: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth random uint8 images (N, C, H, W): blobs, not white noise."""
    generator = np.random.default_rng(seed)
    coarse = generator.integers(0, 256, size=(count, channels, 4, 4)).astype(np.float32)
    fine = np.repeat(np.repeat(coarse, size // 4, axis=2), size // 4, axis=3)
    return np.clip(fine + generator.normal(0, 8, fine.shape), 0, 255).astype(np.uint8)


# The synthetic shape classes of `labelled_images`, shared by the evaluation tests.
CLASSES = ["square", "ring", "bar", "column", "cross"]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one thread is fastest, and on a busy machine a second one spin-waits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def labelled_images(count: int, size: int = 16, seed: int = 0, classes=None):
    """Synthetic shape classes (uint8 (N, 1, S, S), int64 labels): a square, a ring, a bar, a
    column or a cross of random place, size and brightness on a faint noisy background."""
    generator = np.random.default_rng(seed)
    labels = generator.choice(classes if classes is not None else len(CLASSES), size=count)
    rows, columns = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = size / 2 + generator.uniform(-size / 6, size / 6, size=(count, 2))
    radius = generator.uniform(size / 6, size / 3, size=count)
    dy = np.abs(rows[None] - centre[:, 0, None, None]) / radius[:, None, None]  # (N, S, S)
    dx = np.abs(columns[None] - centre[:, 1, None, None]) / radius[:, None, None]
    distance = np.sqrt(dx**2 + dy**2)
    masks = np.stack(
        [
            (dx < 1) & (dy < 1),  # square
            (distance > 0.6) & (distance < 1.0),  # ring
            (dy < 0.35) & (dx < 1.3),  # bar
            (dx < 0.35) & (dy < 1.3),  # column
            ((dx < 0.25) | (dy < 0.25)) & (distance < 1.2),  # cross
        ]
    )  # (K, N, S, S)
    shape = masks[labels, np.arange(count)].astype(np.float32)
    brightness = generator.uniform(140, 255, size=(count, 1, 1))
    background = random_images(count, 1, size, seed=seed + 1)[:, 0].astype(np.float32) * 0.15
    images = background + shape * brightness + generator.normal(0, 6, shape.shape)
    return np.clip(images, 0, 255).astype(np.uint8)[:, None], labels.astype(np.int64)


def text_set(count: int = 96, seed: int = 0) -> TextSet:
    """`count` templated texts (`tiny_corpus`) in two classes, as the text splits hold them."""
    texts = tiny_corpus(count, seed).strip().split("\n%\n")
    labels = np.arange(count) % 2
    table = pd.DataFrame({"id": [f"t{i}" for i in range(count)], "origin": "corpus.txt",
                          "label": labels, "class": np.array(["even", "odd"])[labels],
                          "text": texts})  # fmt: skip
    return TextSet(table, ["even", "odd"])


def save_text_split(folder: Path, texts: TextSet) -> Path:
    """`texts` saved as a training split: the text set and its vocabulary."""
    save_text_set(folder, texts)
    Vocabulary.from_texts(texts.texts).save(Path(folder) / "vocab.json")
    return Path(folder)


def image_set(count: int, seed: int, labelled: bool = True) -> ImageSet:
    images, labels = labelled_images(count, seed=seed)
    if not labelled:
        return ImageSet(images, np.full(count, -1, dtype=np.int64), [])
    return ImageSet(images, labels, list(CLASSES))


TINY_EVALUATOR = EvaluatorParams(
    epochs=4,
    patience=2,
    batch_size=64,
    learning_rate=0.01,
    width=8,
    embedding_dim=16,
    dropout=0.1,
    hflip=0.0,
    device="cpu",
    seed=0,
)


@functools.cache
def trained_evaluator():
    """A tiny classifier evaluator trained on synthetic classes, once per session (seconds);
    the metrics tests measure with it too."""
    train = image_set(2000, 10)
    return train, *train_evaluator(train, image_set(400, 11), TINY_EVALUATOR, log=lambda _: None)


def read_grid(path, scale: int = 2) -> np.ndarray:
    """A grid PNG written by `aigc.images.save_grid` back as uint8 (C, H, W) at scale 1."""
    from PIL import Image

    array = np.asarray(Image.open(path))[::scale, ::scale]
    return array[None] if array.ndim == 2 else np.transpose(array, (2, 0, 1))


def grid_tiles(grid: np.ndarray, count: int, size: int, columns: int = 8, padding: int = 2):
    """The first `count` tiles (N, C, size, size) of a grid made by `aigc.images.make_grid`."""
    tiles = []
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = padding + row * (size + padding), padding + column * (size + padding)
        tiles.append(grid[:, top : top + size, left : left + size])
    return np.stack(tiles)
