"""Splitting a clean image set into train, val and test: stratified by label, seeded.

The test set is the source's official test split when the manifest has one (its `split` column
says "test"), else a stratified `test_fraction` of everything. From the rest, a stratified
`val_fraction` goes to val and what remains is train. `train_fraction` is read by the degrade
stage (aigc/degrade.py), which keeps that share of train for the generators: the evaluator
still learns from the whole of it, so a data-quantity experiment does not move the ruler.
Unlabelled items (-1) form one stratum, so an unlabelled set gets a plain seeded shuffle. Each
split keeps the clean order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aigc.files import atomic_memmap, release_pages, write_json, write_npy, write_text
from aigc.imagesets import ImageSet
from aigc.params import spec

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitParams:
    """params.yaml `split`."""

    val_fraction: float = spec(ge=0.0, lt=1.0, doc="share of the training items held out")
    test_fraction: float = spec(ge=0.0, lt=1.0, doc="test share without an official test split")
    train_fraction: float = spec(gt=0.0, le=1.0, doc="share of train the generators get")
    seed: int = spec(ge=0, doc="seed of the shuffle")


def read_clean_manifest(path: str | Path) -> pd.DataFrame:
    """The clean manifest (id, origin, split, label, class), empty fields as "" (never NaN)."""
    return pd.read_csv(path, dtype={"split": str, "origin": str}, keep_default_na=False)


def stratified_take(
    labels: np.ndarray, indices: np.ndarray, fraction: float, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split `indices` into (taken, rest): round(fraction * n) of each label's items, at random."""
    taken = []
    for label in np.unique(labels[indices]):
        members = indices[labels[indices] == label]
        count = int(np.floor(fraction * len(members) + 0.5))
        taken.append(generator.permutation(members)[:count])
    taken = np.sort(np.concatenate(taken)) if taken else np.zeros(0, np.int64)
    return taken, np.setdiff1d(indices, taken)


def split_indices(
    labels: np.ndarray, official_split: np.ndarray, params: SplitParams
) -> dict[str, np.ndarray]:
    """Sorted item indices of train, val and test."""
    generator = np.random.default_rng(params.seed)
    everything = np.arange(len(labels))
    official_test = official_split == "test"
    if official_test.any():
        test, pool = everything[official_test], everything[~official_test]
    else:
        test, pool = stratified_take(labels, everything, params.test_fraction, generator)
    val, train = stratified_take(labels, pool, params.val_fraction, generator)
    return {"train": train, "val": val, "test": test}


def write_subset(
    folder: str | Path,
    image_set: ImageSet,
    manifest: pd.DataFrame,
    indices: np.ndarray,
    chunk_size: int = 8192,
) -> None:
    """Write the items `indices` of `image_set` as an image set (+ manifest.csv), in chunks."""
    folder = Path(folder)
    with atomic_memmap(folder / "images.npy", (len(indices), *image_set.images.shape[1:])) as out:
        for start in range(0, len(indices), chunk_size):
            block = indices[start : start + chunk_size]
            out[start : start + len(block)] = image_set.images[block]
            release_pages(out)  # bounded memory: the pages live on in the files
            release_pages(image_set.images)
    write_npy(folder / "labels.npy", image_set.labels[indices])
    write_json(folder / "classes.json", list(image_set.classes))
    write_text(folder / "manifest.csv", manifest.iloc[indices].to_csv(index=False))
