"""The text evaluator: the network whose embedding is the text ruler's feature space; its inputs.

No pretrained text encoder can be downloaded here, so, as on the image side (aigc/features.py),
the ruler is trained in the pipeline: a character-level CNN classifier (Kim 2014,
https://arxiv.org/abs/1408.5882, on characters as Zhang et al. 2015,
https://arxiv.org/abs/1509.01626):

    characters (B, L) -> embedding (B, E, L) -> 1-D convs of a few widths, ReLU, max over time
    -> (B, C·W) -> dropout -> linear embedding (B, D) = the feature space -> ReLU, dropout
    -> class layer (B, K)

trained with early stopping on validation accuracy, seeded and deterministic on a CPU. Its
characters are the training split's vocabulary (aigc.text_sets.Vocabulary, `<unk>` for the
rest), stored in the checkpoint with the shape; texts longer than `max_chars` are cut there.

- a labelled source (at least two classes) trains it to tell the classes apart; its softmax is
  what the class metrics use;
- an unlabelled one (or a single class) trains it on a pretext task instead: a real text, the
  same words shuffled, or each word's characters shuffled (`PRETEXT`). The features then learn
  word and word-order regularities; there are no data classes, so class metrics are null.

Measured on Debian's fortunes (10 categories, 6050 train / 672 val / 746 test texts) with the
default params, against a chance (majority-class share of test) of 0.158: on one CPU thread,
test accuracy 0.605 (val 0.610, best at the last of 15 epochs) in 52 s; the pipeline's run
(metrics/text/evaluator.json) reached 0.595 (val 0.609 at epoch 12 of 15) in 37 s. Weights are
bit-identical between runs with the same thread count, not across thread counts.

`read_text_samples` turns anything a user wants scored (a text set folder, a `.txt`, a `.csv`)
into a TextSet.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from aigc.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aigc.params import ParamsError, spec
from aigc.text_sets import COLUMNS, TextSet, Vocabulary, load_text_set

FAMILY = "text_evaluator"
PAD = 0  # id of <pad> in every Vocabulary (aigc.text_sets.SPECIALS)
PRETEXT = ("real", "shuffled_words", "shuffled_characters")  # classes of the unlabelled task


@dataclass(frozen=True)
class TextEvaluatorParams:
    """params.yaml `text_evaluator`: how the text ruler's network is trained."""

    epochs: int = spec(ge=1, doc="upper bound on epochs")
    patience: int = spec(ge=1, doc="epochs without val improvement before stopping")
    batch_size: int = spec(ge=1, doc="training batch size")
    learning_rate: float = spec(gt=0.0, doc="peak Adam learning rate (one-cycle schedule)")
    character_dim: int = spec(ge=1, doc="size of a character's embedding")
    channels: int = spec(ge=1, doc="filters per convolution width")
    widths: tuple[int, ...] = spec(ge=1, doc="convolution widths, in characters")
    embedding_dim: int = spec(ge=2, doc="size of the embedding: the feature space")
    dropout: float = spec(ge=0.0, lt=1.0, doc="dropout before each linear layer")
    max_chars: int = spec(ge=1, doc="texts are cut to this many characters")
    seed: int = spec(ge=0, doc="seed of init, shuffling and the pretext task")

    def __post_init__(self) -> None:
        if not self.widths:
            raise ParamsError("text_evaluator.widths = [] is not allowed; allowed: a list of "
                              "integers >= 1, at least one")  # fmt: skip


@dataclass(frozen=True)
class TextEvaluatorConfig:
    """The network's shape and its characters; the checkpoint stores it to rebuild the network."""

    kind: str  # "classifier" (labelled source) | "pretext" (unlabelled: PRETEXT classes)
    tokens: tuple[str, ...]  # the vocabulary, index = character id
    classes: tuple[str, ...]  # class names, index = label
    character_dim: int
    channels: int
    widths: tuple[int, ...]
    embedding_dim: int
    max_chars: int
    dropout: float = 0.3


# ---------------------------------------------------------------- the network


class TextEvaluator(nn.Module):
    """Character embedding → convolutions, max over time → linear embedding → class layer."""

    def __init__(self, config: TextEvaluatorConfig) -> None:
        super().__init__()
        if config.kind not in ("classifier", "pretext"):
            raise ValueError(f"unknown text evaluator kind {config.kind!r}")
        if len(config.classes) < 2:
            raise ValueError("a text evaluator needs at least 2 classes")
        self.config = config
        self.vocabulary = Vocabulary(list(config.tokens))
        self.characters = nn.Embedding(len(config.tokens), config.character_dim, padding_idx=PAD)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(config.character_dim, config.channels, width, padding=width // 2)
            for width in config.widths
        )
        pooled = config.channels * len(config.widths)
        self.embedding = nn.Sequential(  # (B, C·W) -> (B, D): the ruler's feature space
            nn.Dropout(config.dropout), nn.Linear(pooled, config.embedding_dim)
        )
        classes = len(config.classes)
        self.head = nn.Sequential(
            nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(config.embedding_dim, classes)
        )  # fmt: skip

    @property
    def classifies(self) -> bool:
        """True when the class layer's classes are the data's (not the pretext task's)."""
        return self.config.kind == "classifier"

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Character ids (B, L), <pad>-padded -> embeddings (B, D)."""
        length = ids.shape[1]
        inside = (ids != PAD)[:, None, :]  # (B, 1, L): the text's own positions
        characters = self.characters(ids).transpose(1, 2)  # (B, E, L)
        # ReLU outputs are >= 0, so zeroing the padding's positions keeps them out of the max
        pooled = [
            (F.relu(convolution(characters)[:, :, :length]) * inside).amax(dim=2)  # (B, C)
            for convolution in self.convolutions
        ]
        return self.embedding(torch.cat(pooled, dim=1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K)."""
        return self.head(self.embed(ids))


# ---------------------------------------------------------------- texts as tensors


def encode_texts(model: TextEvaluator, texts: list[str]) -> list[np.ndarray]:
    """Each text's character ids, cut to the model's `max_chars`."""
    limit = model.config.max_chars
    return [model.vocabulary.encode(text[:limit]) for text in texts]


def pad_batch(encoded: list[np.ndarray]) -> torch.Tensor:
    """Character-id arrays as one (B, L) int64 tensor, <pad> after each (L >= 1)."""
    batch = np.full((len(encoded), max(1, max(map(len, encoded)))), PAD, dtype=np.int64)
    for row, ids in enumerate(encoded):
        batch[row, : len(ids)] = ids
    return torch.from_numpy(batch)


def length_batches(encoded: list[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Row indices in batches of similar length (little padding), for inference."""
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


# ---------------------------------------------------------------- the task


def shuffle_words(text: str, generator: np.random.Generator) -> str:
    words = text.split()
    return " ".join(words[i] for i in generator.permutation(len(words)))


def shuffle_characters(text: str, generator: np.random.Generator) -> str:
    return " ".join("".join(word[i] for i in generator.permutation(len(word)))
                    for word in text.split())  # fmt: skip


def evaluator_task(text_set: TextSet, kind: str, seed: int) -> tuple[list[str], np.ndarray]:
    """The texts and labels the evaluator learns (or is scored) on.

    A classifier sees the set as it is. The pretext task sees every text three times, in the
    order of PRETEXT: as it is, with its words shuffled, and with each word's characters
    shuffled (seeded), labelled 0, 1, 2.
    """
    if kind == "classifier":
        return text_set.texts, text_set.labels
    generator = np.random.default_rng(seed)
    texts = []
    for text in text_set.texts:
        texts += [text, shuffle_words(text, generator), shuffle_characters(text, generator)]
    return texts, np.tile(np.arange(len(PRETEXT), dtype=np.int64), len(text_set))


def majority_share(labels: np.ndarray) -> float:
    """Share of the most common label: the accuracy of always guessing it."""
    labels = np.asarray(labels)
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0


def labelled(text_set: TextSet) -> bool:
    return len(text_set.classes) >= 2 and len(text_set) > 0 and bool((text_set.labels >= 0).all())


def text_evaluator_config(
    train: TextSet, val: TextSet, vocabulary: Vocabulary, params: TextEvaluatorParams
) -> TextEvaluatorConfig:
    """The network's shape for these splits: a classifier when `train` has at least two classes,
    else the pretext task (ValueError for splits it cannot learn from)."""
    if len(train) == 0 or len(val) == 0:
        raise ValueError("the text evaluator needs non-empty training and validation splits")
    kind = "classifier" if labelled(train) else "pretext"
    if kind == "classifier" and not labelled(val):
        raise ValueError("the training split is labelled but the validation split is not")
    return TextEvaluatorConfig(
        kind=kind,
        tokens=tuple(vocabulary.tokens),
        classes=tuple(train.classes) if kind == "classifier" else PRETEXT,
        character_dim=params.character_dim,
        channels=params.channels,
        widths=tuple(params.widths),
        embedding_dim=params.embedding_dim,
        max_chars=params.max_chars,
        dropout=params.dropout,
    )


# ---------------------------------------------------------------- training


@torch.no_grad()
def text_accuracy(
    model: TextEvaluator, texts: list[str], labels: np.ndarray, batch_size: int = 256
) -> float:
    """Share of `texts` whose most probable class is their label."""
    logits = _forward(model, texts, batch_size)[1]
    return float((logits.argmax(axis=1) == np.asarray(labels)).mean()) if len(texts) else 0.0


def training_batches(
    lengths: np.ndarray, batch_size: int, shuffle: torch.Generator, pool: int = 32
) -> list[np.ndarray]:
    """One epoch's batches of row indices: shuffled, then sorted by length within pools of
    `pool` batches so that a batch pads little, then the batches shuffled. A partial last batch
    is dropped (the one-cycle schedule counts whole batches)."""
    order = torch.randperm(len(lengths), generator=shuffle).numpy()
    count = max(1, len(lengths) // batch_size)
    order = order[: count * batch_size] if len(lengths) >= batch_size else order
    batches = []
    for start in range(0, len(order), pool * batch_size):
        chunk = order[start : start + pool * batch_size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=shuffle).numpy()]


def train_epoch(
    model: TextEvaluator,
    encoded: list[np.ndarray],
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    shuffle: torch.Generator,
    batch_size: int,
) -> None:
    """One pass over the encoded texts in the batches `training_batches` draws."""
    model.train()
    lengths = np.array([len(ids) for ids in encoded])
    for index in training_batches(lengths, batch_size, shuffle):
        ids = pad_batch([encoded[i] for i in index])  # (B, L)
        # Objective: cross-entropy of the labels.
        loss = F.cross_entropy(model(ids), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()


def train_text_evaluator(
    train: TextSet,
    val: TextSet,
    vocabulary: Vocabulary,
    params: TextEvaluatorParams,
    log: Callable[[str], None] = print,
) -> tuple[TextEvaluator, dict]:
    """Train the text evaluator on `train`, keep the weights of its best epoch on `val`.

    Adam with a one-cycle learning-rate schedule over `params.epochs` (Smith & Topin 2017,
    https://arxiv.org/abs/1708.07120), stopping after `patience` epochs without a better val
    accuracy, as the image evaluator trains. Returns the model (eval mode) and a summary.
    """
    torch.manual_seed(params.seed)  # before the network is built: it draws the initial weights
    config = text_evaluator_config(train, val, vocabulary, params)
    model = TextEvaluator(config)
    train_texts, train_labels = evaluator_task(train, config.kind, params.seed)
    val_texts, val_labels = evaluator_task(val, config.kind, params.seed + 1)
    encoded = encode_texts(model, train_texts)
    labels = torch.tensor(train_labels)  # a copy: the table's array is read-only
    steps_per_epoch = max(1, len(encoded) // params.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=params.learning_rate, total_steps=params.epochs * steps_per_epoch
    )
    shuffle = torch.Generator().manual_seed(params.seed)
    best_accuracy, best_epoch, best_state = -1.0, 0, None
    started = time.perf_counter()
    epoch = 0
    for epoch in range(1, params.epochs + 1):
        train_epoch(model, encoded, labels, optimizer, schedule, shuffle, params.batch_size)
        accuracy = text_accuracy(model, val_texts, val_labels)
        seconds = time.perf_counter() - started
        log(f"text evaluator epoch {epoch}: val accuracy {accuracy:.4f} ({seconds:.0f} s)")
        if accuracy > best_accuracy:
            best_accuracy, best_epoch = accuracy, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= params.patience:
            log(f"text evaluator: no val improvement for {params.patience} epochs, stopping")
            break
    model.load_state_dict(best_state)
    model.eval()
    summary = {
        "kind": config.kind,
        "epochs": epoch,
        "best_epoch": best_epoch,
        "seconds": round(time.perf_counter() - started, 2),
        "val_accuracy": best_accuracy,
        "train_texts": len(train),
        "classes": len(config.classes),
        "vocabulary": len(config.tokens),
    }
    return model, summary


# ---------------------------------------------------------------- features


@dataclass
class TextFeatures:
    embeddings: np.ndarray  # float32 (N, D)
    probabilities: np.ndarray | None  # float32 (N, K); None for a pretext evaluator


@torch.no_grad()
def _forward(
    model: TextEvaluator, texts: list[str], batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, D) and class logits (N, K) of `texts`, float32, in their order."""
    model.eval()
    encoded = encode_texts(model, texts)
    embeddings = np.empty((len(texts), model.config.embedding_dim), dtype=np.float32)
    logits = np.empty((len(texts), len(model.config.classes)), dtype=np.float32)
    for rows in length_batches(encoded, batch_size):
        embedding = model.embed(pad_batch([encoded[i] for i in rows]))  # (B, D)
        embeddings[rows] = embedding.numpy()
        logits[rows] = model.head(embedding).numpy()
    return embeddings, logits


def extract_text_features(
    model: TextEvaluator, texts: list[str], batch_size: int = 256
) -> TextFeatures:
    """Embeddings and (for a classifier) class probabilities of `texts`, in one pass."""
    embeddings, logits = _forward(model, texts, batch_size)
    probabilities = torch.from_numpy(logits).softmax(dim=1).numpy() if model.classifies else None
    return TextFeatures(embeddings, probabilities)


def text_features(model: TextEvaluator, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """The evaluator's embeddings of `texts`: float32 (N, D), the ruler's feature space."""
    return _forward(model, texts, batch_size)[0]


def class_probabilities(
    model: TextEvaluator, texts: list[str], batch_size: int = 256
) -> np.ndarray:
    """Softmax of the class layer for `texts`: float32 (N, K) (the pretext task's classes for
    an unlabelled evaluator)."""
    return torch.from_numpy(_forward(model, texts, batch_size)[1]).softmax(dim=1).numpy()


# ---------------------------------------------------------------- checkpoint and cache


def text_digest(texts: list[str]) -> str:
    """A digest of a list of texts (each length-prefixed, so boundaries count)."""
    digest = hashlib.blake2b(str(len(texts)).encode(), digest_size=16)
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def save_text_evaluator(
    path: str | Path,
    model: TextEvaluator,
    meta: dict,
    features: dict[str, tuple[list[str], TextFeatures]] | None = None,
) -> None:
    """Write the text evaluator checkpoint (shape and vocabulary in `config`); `features`
    caches the features of named text lists, keyed by their digest (see `cached_text_features`).
    Nothing here may differ between two identical runs: timings belong in the metrics."""
    config = dataclasses.asdict(model.config)
    config.update({key: list(config[key]) for key in ("tokens", "classes", "widths")})
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    cache = {
        name: {
            "digest": text_digest(texts),
            "embeddings": torch.from_numpy(found.embeddings),
            "probabilities": None
            if found.probabilities is None
            else torch.from_numpy(found.probabilities),
        }
        for name, (texts, found) in (features or {}).items()
    }
    save_checkpoint(
        path,
        {"family": FAMILY, "config": config, "model": state, "meta": meta, "features": cache},
    )


def load_text_evaluator(path: str | Path) -> tuple[TextEvaluator, dict]:
    """The text evaluator saved at `path` (eval mode, CPU) and its checkpoint dict."""
    checkpoint = load_checkpoint(path)
    if checkpoint["family"] != FAMILY:
        raise CheckpointError(
            f"{path}: a {checkpoint['family']!r} checkpoint, not the text evaluator's"
        )
    try:
        config = dict(checkpoint["config"])
        config.update({key: tuple(config[key]) for key in ("tokens", "classes", "widths")})
        model = TextEvaluator(TextEvaluatorConfig(**config))
        model.load_state_dict(checkpoint["model"])
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise CheckpointError(
            f"{path}: text evaluator checkpoint does not fit this code: {error}"
        ) from None
    return model.eval(), checkpoint


def cached_text_features(
    model: TextEvaluator, checkpoint: dict, texts: list[str], batch_size: int = 256
) -> tuple[TextFeatures, bool]:
    """Features of `texts` from the checkpoint's cache when it holds them, else extracted.

    Returns (features, True when they came from the cache).
    """
    digest = text_digest(texts)
    for entry in (checkpoint.get("features") or {}).values():
        if entry["digest"] == digest:
            probabilities = entry["probabilities"]
            return TextFeatures(
                entry["embeddings"].numpy(),
                None if probabilities is None else probabilities.numpy(),
            ), True
    return extract_text_features(model, texts, batch_size), False


# ---------------------------------------------------------------- inputs from anywhere


def read_text_samples(path: str | Path) -> TextSet:
    """Texts to score: a text set folder, a `.txt` file or a `.csv` file with a `text` column.

    A text set folder (aigc.text_sets) keeps its labels and classes: for samples, the class each
    text was asked for (-1 = none). An `info.json` beside it ({family, num_samples, conditional})
    is checked: `conditional: false` drops the labels, and `num_samples` must match the texts.
    A `.txt` (UTF-8) holds texts separated by lines holding only `%` (the fortune format) when
    it has such lines, else one text per non-empty line. A `.csv` needs a `text` column. Texts
    are data: markup, quotes and any unicode come back exactly. ValueError (naming the path and
    what is allowed) for anything else.
    """
    path = Path(path)
    allowed = "a text set folder (texts.csv, classes.json), a .txt or a .csv with a `text` column"
    if path.is_dir() and (path / "texts.csv").is_file() and (path / "classes.json").is_file():
        return _with_info(load_text_set(path), path)
    if path.is_file() and path.suffix.lower() == ".txt":
        try:
            return unlabelled_set(split_entries(path.read_text(encoding="utf-8")))
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"
            ) from None
    if path.is_file() and path.suffix.lower() == ".csv":
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (ValueError, UnicodeDecodeError) as error:
            message = f"{path}: not a readable CSV file ({error})".splitlines()[0]
            raise ValueError(message) from None
        if "text" not in table.columns:
            raise ValueError(f"{path}: no `text` column (columns: {', '.join(table.columns)})")
        return unlabelled_set(table["text"].tolist())
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder; allowed: {allowed}")
    raise ValueError(f"{path}: not {allowed}")


def split_entries(content: str) -> list[str]:
    """`%`-separated entries when a line holds only `%`, else the non-empty lines."""
    lines = content.splitlines()
    if not any(line.strip() == "%" for line in lines):
        return [line for line in lines if line.strip()]
    entries, current = [], []
    for line in [*lines, "%"]:
        if line.strip() == "%":
            entry = "\n".join(current).strip("\n")
            if entry.strip():
                entries.append(entry)
            current = []
        else:
            current.append(line)
    return entries


def unlabelled_set(texts: list[str]) -> TextSet:
    """Texts as a TextSet with no classes (labels -1)."""
    count = len(texts)
    table = pd.DataFrame({"id": range(count), "origin": [f"sample#{i}" for i in range(count)],
                          "label": np.full(count, -1, dtype=np.int64), "class": [""] * count,
                          "text": list(texts)})  # fmt: skip
    return TextSet(table[COLUMNS], [])


def _with_info(text_set: TextSet, folder: Path) -> TextSet:
    """Apply `info.json` (when the folder has one) to a sample set."""
    info_path = folder / "info.json"
    if not info_path.is_file():
        return text_set
    try:
        info = json.loads(info_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{info_path}: not valid JSON ({error})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{info_path}: expected an object {{family, num_samples, conditional}}")
    expected = info.get("num_samples")
    if expected is not None and expected != len(text_set):
        raise ValueError(f"{info_path}: says {expected} samples, texts.csv holds {len(text_set)}")
    if info.get("conditional") is False:
        table = text_set.table.copy()
        table["label"] = -1
        return TextSet(table, text_set.classes)
    return text_set
