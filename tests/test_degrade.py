"""Degrade: the train_fraction share, seeded corruption with exact counts, and the cleaner catching
every injected broken file and exact copy with the right reason (or, switched off, keeping all)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import labelled_images, tiny_params

from aigc.degrade import EXPECTED_REASON, DegradeParams
from aigc.imagesets import ImageSet, load_image_set, save_image_set
from aigc.params import ParamsError, from_dict
from stages.degrade import main as degrade_main

COUNT = 300


@pytest.fixture
def split_train(tmp_path):
    """A training split of synthetic shapes (3 classes), with the manifest split writes."""
    images, labels = labelled_images(COUNT, seed=3, classes=3)
    folder = tmp_path / "train"
    save_image_set(folder, ImageSet(images, labels, ["a", "b", "c"]))
    manifest = pd.DataFrame({"id": 5000 + np.arange(COUNT), "origin": [f"x#{i}" for i in
                             range(COUNT)], "split": "train", "label": labels,
                             "class": [["a", "b", "c"][k] for k in labels]})  # fmt: skip
    manifest.to_csv(folder / "manifest.csv", index=False)
    return folder


def run(tmp_path, split_train, name: str, train_fraction: float = 1.0, **degrade) -> dict:
    params = tmp_path / f"{name}.yaml"
    values = tiny_params({"degrade": degrade, "split": {"train_fraction": train_fraction}})
    params.write_text(yaml.safe_dump(values))
    out = tmp_path / name
    degrade_main(["--train", str(split_train), "--out", str(out), "--metrics",
                  str(tmp_path / f"{name}.json"), "--params", str(params)])  # fmt: skip
    return json.loads((tmp_path / f"{name}.json").read_text())


def test_off_by_default_it_is_a_byte_for_byte_copy(tmp_path, split_train):
    metrics = run(tmp_path, split_train, "off")
    for name in ("images.npy", "labels.npy", "classes.json"):
        assert (tmp_path / "off" / name).read_bytes() == (split_train / name).read_bytes()
    assert metrics["images"] == COUNT and metrics["rejected"] == 0
    assert sum(metrics["injected"].values()) == 0


def test_train_fraction_keeps_a_stratified_share(tmp_path, split_train):
    metrics = run(tmp_path, split_train, "half", train_fraction=0.5)
    full = load_image_set(split_train)
    half = load_image_set(tmp_path / "half")
    assert metrics["share"] == len(half) == COUNT // 2
    for label in range(3):
        assert (half.labels == label).sum() == round((full.labels == label).sum() / 2)


CORRUPTION = dict(label_flip=0.1, broken=0.3, duplicates=0.2, seed=4)


def test_corruption_is_seeded_and_its_counts_match_its_params(tmp_path, split_train):
    first = run(tmp_path, split_train, "a", **CORRUPTION)
    again = run(tmp_path, split_train, "b", **CORRUPTION)
    other = run(tmp_path, split_train, "c", **(CORRUPTION | {"seed": 5}))
    for name in ("images.npy", "labels.npy", "injected.csv", "rejected.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    injected = (tmp_path / "a" / "injected.csv").read_bytes()
    assert injected != (tmp_path / "c" / "injected.csv").read_bytes()
    assert first == again
    assert first["injected"] == other["injected"] == {
        "label_flip": 30, "corrupt": 30, "blank": 30, "truncated": 30,
        "exact_duplicate": 30, "near_duplicate": 30,
    }  # fmt: skip
    injected = pd.read_csv(tmp_path / "a" / "injected.csv")
    flips = injected[injected.kind == "label_flip"]
    broken = injected[injected.kind.isin(["corrupt", "blank", "truncated"])]
    assert not set(flips.id) & set(broken.id)  # disjoint images
    labels = load_image_set(split_train).labels
    for row in flips.itertuples():  # every flip is to a different class
        before, after = (int(v) for v in row.detail.removeprefix("label ").split(" -> "))
        assert before == labels[row.source - 5000] and after != before


def test_the_cleaner_rejects_each_broken_file_and_exact_copy_with_its_reason(tmp_path, split_train):
    metrics = run(tmp_path, split_train, "on", **CORRUPTION)
    injected = pd.read_csv(tmp_path / "on" / "injected.csv")
    rejected = pd.read_csv(tmp_path / "on" / "rejected.csv").set_index("id")
    for row in injected.itertuples():
        if row.kind in ("corrupt", "blank", "truncated", "exact_duplicate"):
            assert rejected.loc[row.id, "reason"] == EXPECTED_REASON[row.kind], row
        elif row.id in rejected.index and row.kind == "near_duplicate":
            assert rejected.loc[row.id, "reason"] == "near_duplicate"
    assert metrics["caught"]["corrupt"] == metrics["caught"]["truncated"] == 30
    assert metrics["caught"]["blank"] == metrics["caught"]["exact_duplicate"] == 30
    assert metrics["left"]["label_flip"] + metrics["caught"]["label_flip"] == 30
    kept = pd.read_csv(tmp_path / "on" / "manifest.csv")
    assert len(kept) + len(rejected) == COUNT + 60  # every item kept or rejected
    assert metrics["images"] == len(load_image_set(tmp_path / "on")) == len(kept)


def test_without_the_cleaner_every_item_trains_and_the_undecodable_are_black(tmp_path, split_train):
    metrics = run(tmp_path, split_train, "raw", clean=False, **CORRUPTION)
    image_set = load_image_set(tmp_path / "raw")
    manifest = pd.read_csv(tmp_path / "raw" / "manifest.csv", keep_default_na=False)
    assert len(image_set) == COUNT + 60 and metrics["rejected"] == 0
    broken = manifest.problem != ""
    assert broken.sum() == metrics["undecodable_kept"] == 60  # corrupt + truncated
    assert not image_set.images[broken.to_numpy()].any()
    assert set(manifest.problem[broken].str.split(":").str[0]) == {"corrupt", "truncated"}


def test_bad_shares_are_refused_naming_the_keys():
    values = tiny_params()["degrade"] | {"label_flip": 0.7, "broken": 0.5}
    with pytest.raises(ParamsError, match=r"degrade.label_flip \+ degrade.broken = 1.2"):
        from_dict(DegradeParams, values, "degrade")
    with pytest.raises(ParamsError, match="degrade.duplicates"):
        from_dict(DegradeParams, values | {"label_flip": 0, "duplicates": -0.1}, "degrade")


def test_label_flips_of_an_unlabelled_set_are_refused(tmp_path, split_train, capsys):
    unlabelled = tmp_path / "unlabelled"
    image_set = load_image_set(split_train)
    save_image_set(unlabelled, ImageSet(np.asarray(image_set.images),
                                        np.full(COUNT, -1, np.int64), []))  # fmt: skip
    (unlabelled / "manifest.csv").write_bytes((split_train / "manifest.csv").read_bytes())
    with pytest.raises(SystemExit) as stopped:
        run(tmp_path, unlabelled, "flipped", label_flip=0.1)
    assert stopped.value.code == 2  # a bad setting: named on stderr, exit 2
    assert (
        "degrade.label_flip = 0.1 needs labels of at least two classes" in capsys.readouterr().err
    )
