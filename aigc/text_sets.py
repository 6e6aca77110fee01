"""A text set on disk, the folder format text stages hand each other, and its character vocabulary.

A folder holds `texts.csv` (one row per text: id, origin, label, class, text; pandas reads it
back with every text intact, quotes, commas and newlines included) and `classes.json` (the class
names, index = label). The training split also holds `vocab.json`: the characters of its texts,
most frequent first, after the special tokens (`SPECIALS`); a character the vocabulary lacks
maps to `<unk>`, so text the models never saw still encodes.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aigc.files import write_json, write_text
from aigc.params import spec
from aigc.splits import stratified_take

COLUMNS = ["id", "origin", "label", "class", "text"]
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]


@dataclass
class TextSet:
    table: pd.DataFrame  # COLUMNS
    classes: list[str]

    def __len__(self) -> int:
        return len(self.table)

    @property
    def texts(self) -> list[str]:
        return self.table["text"].tolist()

    @property
    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy(dtype=np.int64)


def save_text_set(folder: str | Path, text_set: TextSet) -> None:
    folder = Path(folder)
    write_text(folder / "texts.csv", text_set.table[COLUMNS].to_csv(index=False))
    write_json(folder / "classes.json", list(text_set.classes))


def load_text_set(folder: str | Path) -> TextSet:
    """The text set in `folder`; FileNotFoundError naming it when there is none."""
    folder = Path(folder)
    table = pd.read_csv(folder / "texts.csv", dtype={"origin": str, "class": str, "text": str},
                        keep_default_na=False)  # fmt: skip
    return TextSet(table, json.loads((folder / "classes.json").read_text()))


@dataclass(frozen=True)
class Vocabulary:
    tokens: list[str]  # SPECIALS, then characters

    @classmethod
    def from_texts(cls, texts: list[str]) -> Vocabulary:
        counts = Counter(character for text in texts for character in text)
        ranked = sorted(counts, key=lambda character: (-counts[character], character))
        return cls(SPECIALS + ranked)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """{token: id}, built once per vocabulary (encode runs over every text)."""
        return {token: i for i, token in enumerate(self.tokens)}

    def encode(self, text: str) -> np.ndarray:
        index, unknown = self.index, self.index["<unk>"]
        return np.array([index.get(character, unknown) for character in text], dtype=np.int64)

    def decode(self, ids) -> str:
        """The characters of `ids`; pad, bos and eos dropped, `<unk>` shown as U+FFFD."""
        unknown = SPECIALS.index("<unk>")
        return "".join("\ufffd" if i == unknown else self.tokens[i] for i in ids
                       if i == unknown or i >= len(SPECIALS))  # fmt: skip

    def save(self, path: str | Path) -> None:
        write_json(path, {"tokens": self.tokens})

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        return cls(json.loads(Path(path).read_text())["tokens"])


@dataclass(frozen=True)
class TextSplitParams:
    """params.yaml `text_split`."""

    val_fraction: float = spec(ge=0.0, lt=1.0, doc="share of the texts held out for validation")
    test_fraction: float = spec(ge=0.0, lt=1.0, doc="share held out for test")
    seed: int = spec(ge=0, doc="seed of the shuffle")


def split_rows(labels: np.ndarray, params: TextSplitParams) -> dict[str, np.ndarray]:
    """Sorted rows of train, val and test: stratified by label, seeded."""
    generator = np.random.default_rng(params.seed)
    everything = np.arange(len(labels))
    test, pool = stratified_take(labels, everything, params.test_fraction, generator)
    val, train = stratified_take(labels, pool, params.val_fraction, generator)
    return {"train": train, "val": val, "test": test}
