"""Split: stratified by label, seeded, official test split kept, unlabelled sets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import tiny_params

from aigc.imagesets import ImageSet, load_image_set, save_image_set
from stages.split import main as split_main


def make_clean(folder, labels, splits=None) -> None:
    """A clean image set whose image i is filled with i % 256 and whose manifest id is 1000 + i."""
    count = len(labels)
    images = (np.arange(count) % 256).astype(np.uint8)[:, None, None, None]
    images = np.broadcast_to(images, (count, 1, 4, 4)).copy()
    classes = [f"c{k}" for k in range(max(labels) + 1)] if max(labels) >= 0 else []
    save_image_set(folder, ImageSet(images, np.asarray(labels, np.int64), classes))
    manifest = pd.DataFrame(
        {
            "id": 1000 + np.arange(count),
            "origin": [f"item{i}" for i in range(count)],
            "split": splits if splits is not None else [""] * count,
            "label": labels,
        }
    )
    manifest.to_csv(folder / "manifest.csv", index=False)


def run_split(tmp_path, name: str, **split) -> dict[str, tuple]:
    """Run the stage; {split: (ids, labels, images)} for train, val, test."""
    params = tmp_path / f"{name}.yaml"
    params.write_text(yaml.safe_dump(tiny_params({"split": split})))
    out = tmp_path / name
    split_main(["--clean", str(tmp_path / "clean"), "--out", str(out), "--params", str(params)])
    result = {}
    for part in ("train", "val", "test"):
        image_set = load_image_set(out / part)
        ids = pd.read_csv(out / part / "manifest.csv").id.to_numpy()
        assert json.loads((out / part / "classes.json").read_text()) == image_set.classes
        result[part] = (ids, image_set.labels, np.asarray(image_set.images))
    return result


LABELS = [0] * 100 + [1] * 50 + [2] * 30


def counts(labels) -> list[int]:
    return np.bincount(labels, minlength=3).tolist()


def test_stratified_and_complete(tmp_path):
    make_clean(tmp_path / "clean", LABELS)
    parts = run_split(tmp_path, "a", val_fraction=0.1, test_fraction=0.2, seed=0)
    assert counts(parts["test"][1]) == [20, 10, 6]
    assert counts(parts["val"][1]) == [8, 4, 2]  # 10% of what test left: 80, 40, 24
    assert counts(parts["train"][1]) == [72, 36, 22]
    every_id = np.concatenate([parts[p][0] for p in parts])
    assert sorted(every_id) == list(range(1000, 1180))  # disjoint and complete
    for ids, labels, images in parts.values():
        index = ids - 1000
        assert (labels == np.asarray(LABELS)[index]).all()  # labels follow their images
        assert (images[:, 0, 0, 0] == index % 256).all()
        assert (np.diff(ids) > 0).all()  # the clean order is kept


def test_seeded(tmp_path):
    make_clean(tmp_path / "clean", LABELS)
    first = run_split(tmp_path, "a", seed=3)
    again = run_split(tmp_path, "b", seed=3)
    other = run_split(tmp_path, "c", seed=4)
    for part in ("train", "val", "test"):
        assert (first[part][0] == again[part][0]).all()
    assert not np.array_equal(first["val"][0], other["val"][0])


def test_the_official_test_split_is_kept(tmp_path):
    splits = ["train"] * 150 + ["test"] * 30
    labels = [0, 1, 2] * 60
    make_clean(tmp_path / "clean", labels, splits)
    parts = run_split(tmp_path, "a", test_fraction=0.5, val_fraction=0.2)
    assert parts["test"][0].tolist() == list(range(1150, 1180))
    assert counts(parts["val"][1]) == [10, 10, 10]


def test_train_fraction_leaves_every_split_whole(tmp_path):
    """The share is the degrade stage's (tests/test_degrade.py): the evaluator, which learns
    from train, and the reference sets stay the same in a data-quantity experiment."""
    make_clean(tmp_path / "clean", LABELS)
    full = run_split(tmp_path, "full", train_fraction=1.0, test_fraction=0.2, val_fraction=0.1)
    half = run_split(tmp_path, "half", train_fraction=0.5, test_fraction=0.2, val_fraction=0.1)
    for name in ("train", "val", "test"):
        assert (half[name][0] == full[name][0]).all()
    assert counts(full["train"][1]) == [72, 36, 22]


def test_unlabelled_items_get_a_seeded_shuffle(tmp_path):
    make_clean(tmp_path / "clean", [-1] * 50)
    parts = run_split(tmp_path, "a", test_fraction=0.2, val_fraction=0.25, seed=1)
    assert [len(parts[p][0]) for p in ("train", "val", "test")] == [30, 10, 10]
    assert (parts["train"][1] == -1).all()
    test_ids = parts["test"][0] - 1000
    assert test_ids.tolist() != list(range(40, 50))  # shuffled, not the tail


@pytest.mark.parametrize("fraction", [0.0, 0.999])
def test_extreme_fractions_still_write_every_split(tmp_path, fraction):
    make_clean(tmp_path / "clean", LABELS)
    parts = run_split(tmp_path, "a", val_fraction=fraction, test_fraction=0.1)
    assert sum(len(parts[p][0]) for p in parts) == len(LABELS)
    assert parts["val"][2].shape[1:] == (1, 4, 4)
