"""A text set on disk, the folder format text stages hand each other, and its character vocabulary.

A folder holds `texts.csv` (one row per text: id, origin, label, class, text; pandas reads it
back with every text intact, quotes, commas and newlines included) and `classes.json` (the class
names, index = label). The training split also holds `vocab.json`: the characters of its texts,
most frequent first, after the special tokens (`SPECIALS`); a character the vocabulary lacks
maps to `<unk>`, so text the models never saw still encodes.

`TokenSet` is what the training loop (aigc/training.py) takes for a text family: one row per
text, `<bos>`, the text's character ids, `<eos>`, then `<pad>` to the longest row, with the
same loop-facing members as an image set (aigc/imagesets.py).
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
PAD, BOS, EOS, UNK = range(len(SPECIALS))


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
        return self.table["label"].to_numpy(dtype=np.int64, copy=True)


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
        """The characters of `ids` up to the first `<eos>`; pad and bos dropped, `<unk>` shown
        as U+FFFD."""
        characters = []
        for i in (int(i) for i in ids):
            if i == EOS:
                break
            if i == UNK or i >= len(SPECIALS):
                characters.append("\ufffd" if i == UNK else self.tokens[i])
        return "".join(characters)

    def rows(self, texts: list[str], length: int | None = None) -> np.ndarray:
        """int64 (N, length): `<bos>` ids `<eos>` `<pad>`...; `length` defaults to the longest
        text + 2, and a longer text is cut to fit (its `<eos>` kept)."""
        encoded = [self.encode(text) for text in texts]
        length = length or max((len(ids) for ids in encoded), default=0) + 2
        rows = np.full((len(texts), length), PAD, dtype=np.int64)
        for row, ids in zip(rows, encoded, strict=True):
            ids = ids[: length - 2]
            row[0], row[1 : len(ids) + 1], row[len(ids) + 1] = BOS, ids, EOS
        return rows

    def save(self, path: str | Path) -> None:
        write_json(path, {"tokens": self.tokens})

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        return cls(json.loads(Path(path).read_text())["tokens"])


@dataclass
class TokenSet:
    """Texts as token rows, the training loop's view of a text set (see the module docstring)."""

    tokens: np.ndarray  # int64 (N, L)
    labels: np.ndarray  # int64 (N,)
    classes: list[str]
    vocabulary: Vocabulary

    modality = "text"
    unit = "characters"  # what `units` counts

    @classmethod
    def from_text_set(cls, text_set: TextSet, vocabulary: Vocabulary) -> TokenSet:
        rows = vocabulary.rows(text_set.texts)
        return cls(rows, text_set.labels, list(text_set.classes), vocabulary)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def array(self) -> np.ndarray:
        return self.tokens

    @property
    def labelled(self) -> bool:
        return bool(self.classes) and len(self.labels) > 0 and bool((self.labels >= 0).all())

    def origin_rows(self) -> np.ndarray:
        return np.arange(len(self.tokens), dtype=np.int64)

    def config_fields(self) -> dict:
        """The Config fields the data fixes (aigc.models.text.base.TextConfig)."""
        return {
            "vocabulary": tuple(self.vocabulary.tokens),
            "max_length": self.tokens.shape[1],
            "num_classes": len(self.classes),
        }

    @staticmethod
    def to_batch(rows):
        return rows

    @staticmethod
    def units(batch) -> int:
        """Characters in a batch (its tokens other than pad and bos), the loop's rate."""
        return int((batch > BOS).sum())


def load_token_set(folder: str | Path) -> TokenSet:
    """The text set in `folder` as token rows, with the vocabulary in its `vocab.json`."""
    folder = Path(folder)
    vocabulary_path = folder / "vocab.json"
    if not vocabulary_path.is_file():
        raise FileNotFoundError(
            f"{folder}: no vocab.json (the training split of split-text has one)"
        )
    return TokenSet.from_text_set(load_text_set(folder), Vocabulary.load(vocabulary_path))


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
