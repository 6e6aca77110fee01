"""The evaluator: the network whose embedding is the metrics' feature space, and its inputs.

Inception weights cannot be downloaded here, so the ruler is trained in the pipeline:

- a labelled source gets a CNN classifier (three conv blocks, then a linear embedding layer,
  then the class layer), trained with early stopping on validation accuracy. The embedding is
  the penultimate layer's output (before its ReLU); class probabilities come from the softmax,
  which the Inception-style score and the class metrics use;
- an unlabelled source (labels all -1) gets a convolutional autoencoder with the same encoder,
  trained with early stopping on validation reconstruction error; its bottleneck is the
  embedding, and there are no class probabilities (class metrics are then null).

`read_samples` and `conform` turn anything a user wants scored (an image set, an `.npy`, a
folder of image files) into uint8 (N, C, H, W) at the evaluator's channels and size.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aigc.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aigc.devices import resolve_device
from aigc.files import read_npy
from aigc.imagesets import ImageSet, load_image_set
from aigc.params import spec

FAMILY = "evaluator"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}  # Pillow's
MAX_PIXELS = 89_478_485  # largest picture decoded: Pillow's own decompression-bomb limit


@dataclass(frozen=True)
class EvaluatorParams:
    """params.yaml `evaluator`: how the ruler's network is trained."""

    epochs: int = spec(ge=1, doc="upper bound on epochs")
    patience: int = spec(ge=1, doc="epochs without val improvement before stopping")
    batch_size: int = spec(ge=1, doc="training batch size")
    learning_rate: float = spec(gt=0.0, doc="peak Adam learning rate (one-cycle schedule)")
    width: int = spec(ge=1, doc="channels of the first conv block")
    embedding_dim: int = spec(ge=2, doc="size of the embedding")
    dropout: float = spec(ge=0.0, lt=1.0, doc="dropout before the linear layers")
    hflip: float = spec(ge=0.0, le=1.0, doc="probability of a left-right flip of a training image")
    device: str = spec(choices=("auto", "cpu", "cuda"), doc="where it trains")
    seed: int = spec(ge=0, doc="seed of init and shuffling")


@dataclass(frozen=True)
class EvaluatorConfig:
    """The network's shape; the checkpoint stores it so `load_evaluator` rebuilds the network."""

    kind: str  # "classifier" (labelled source) | "autoencoder" (unlabelled source)
    channels: int
    image_size: int
    width: int
    embedding_dim: int
    classes: tuple[str, ...] = ()  # class names, index = label (classifier only)
    dropout: float = 0.3


# ---------------------------------------------------------------- the network


def _conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class Evaluator(nn.Module):
    """Conv encoder → linear embedding → class layer (classifier) or decoder (autoencoder)."""

    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__()
        if config.kind not in ("classifier", "autoencoder"):
            raise ValueError(f"unknown evaluator kind {config.kind!r}")
        if config.image_size < 8:
            raise ValueError(f"the evaluator needs images of at least 8x8, got {config.image_size}")
        if config.kind == "classifier" and len(config.classes) < 2:
            raise ValueError("a classifier evaluator needs at least 2 classes")
        self.config = config
        width, side = config.width, config.image_size // 8
        self.encoder = nn.Sequential(  # (B, C, S, S) -> (B, 4w, S/8, S/8)
            *_conv_block(config.channels, width),
            nn.MaxPool2d(2),
            *_conv_block(width, 2 * width),
            nn.MaxPool2d(2),
            *_conv_block(2 * width, 4 * width),
            nn.MaxPool2d(2),
        )
        flat = 4 * width * side * side
        self.embedding = nn.Sequential(  # (B, 4w, s, s) -> (B, D): the metrics' feature space
            nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(flat, config.embedding_dim)
        )
        if config.kind == "classifier":
            self.head = nn.Sequential(
                nn.ReLU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.embedding_dim, len(config.classes)),
            )
        else:
            self.head = nn.Sequential(  # (B, D) -> (B, C, 8s, 8s), mirror of the encoder
                nn.Linear(config.embedding_dim, flat),
                nn.ReLU(inplace=True),
                nn.Unflatten(1, (4 * width, side, side)),
                nn.Upsample(scale_factor=2),
                *_conv_block(4 * width, 2 * width),
                nn.Upsample(scale_factor=2),
                *_conv_block(2 * width, width),
                nn.Upsample(scale_factor=2),
                nn.Conv2d(width, config.channels, 3, padding=1),
            )

    @property
    def classifies(self) -> bool:
        return self.config.kind == "classifier"

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, S, S) in [0, 1] -> embeddings (B, D)."""
        return self.embedding(self.encoder(images * 2.0 - 1.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K), or reconstruction logits (B, C, S, S) for an autoencoder."""
        output = self.head(self.embed(images))
        if not self.classifies and output.shape[-1] != self.config.image_size:
            output = F.interpolate(output, size=self.config.image_size, mode="bilinear")
        return output

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.classifies:
            return F.cross_entropy(self(images), labels)
        return F.binary_cross_entropy_with_logits(self(images), images)


# ---------------------------------------------------------------- training


def _as_float(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1] on `device`."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).to(device).float().div_(255.0)


def _batches(count: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


@torch.no_grad()
def score_split(
    model: Evaluator, image_set: ImageSet, batch_size: int = 500, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """Accuracy (classifier) or mean reconstruction loss (autoencoder) on a whole split."""
    model.eval()
    device = torch.device(device)
    correct, loss_sum = 0, 0.0
    for block in _batches(len(image_set), batch_size):
        images = _as_float(image_set.images[block], device)
        if model.classifies:
            labels = torch.from_numpy(image_set.labels[block]).to(device)
            correct += int((model(images).argmax(dim=1) == labels).sum())
        else:
            loss_sum += float(model.loss(images, None)) * len(images)
    if model.classifies:
        return {"accuracy": correct / max(1, len(image_set))}
    return {"loss": loss_sum / max(1, len(image_set))}


def evaluator_config(train: ImageSet, val: ImageSet, params: EvaluatorParams) -> EvaluatorConfig:
    """The network's shape for these splits: a classifier when `train` is labelled, else an
    autoencoder (ValueError for splits it cannot learn from)."""
    kind = "classifier" if train.labelled else "autoencoder"
    if kind == "classifier" and not val.labelled:
        raise ValueError("the training split is labelled but the validation split is not")
    if len(train) == 0 or len(val) == 0:
        raise ValueError("the evaluator needs non-empty training and validation splits")
    _, channels, height, width = train.images.shape
    if height != width:
        raise ValueError(f"the evaluator needs square images, got {height}x{width}")
    return EvaluatorConfig(
        kind=kind,
        channels=channels,
        image_size=height,
        width=params.width,
        embedding_dim=params.embedding_dim,
        classes=tuple(train.classes) if kind == "classifier" else (),
        dropout=params.dropout,
    )


def train_epoch(
    model: Evaluator,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    shuffle: torch.Generator,
    params: EvaluatorParams,
) -> None:
    """One pass over uint8 `images` (N, C, S, S) in the order `shuffle` draws; a partial last
    batch is dropped (the one-cycle schedule counts whole batches)."""
    model.train()
    device = images.device
    order = torch.randperm(len(images), generator=shuffle).to(device)
    for step in range(max(1, len(images) // params.batch_size)):
        index = order[step * params.batch_size : (step + 1) * params.batch_size]
        batch = images[index].float().div_(255.0)  # (B, C, S, S) in [0, 1]
        if params.hflip > 0:  # the one augmentation: mirror images (clothes are symmetric)
            flip = (torch.rand(len(index), generator=shuffle) < params.hflip).to(device)
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
        # Objective: cross-entropy of the labels (classifier) or BCE of the pixels (autoencoder).
        loss = model.loss(batch, labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()


def train_evaluator(
    train: ImageSet, val: ImageSet, params: EvaluatorParams, log: Callable[[str], None] = print
) -> tuple[Evaluator, dict]:
    """Train the evaluator on `train`, keep the weights of its best epoch on `val`.

    Adam with a one-cycle learning-rate schedule over `params.epochs` (Smith & Topin 2017,
    https://arxiv.org/abs/1708.07120); training stops early after `patience` epochs without a
    better validation score. Returns the model (eval mode) and a summary of the run.
    """
    device = resolve_device(params.device, "evaluator.device")
    torch.manual_seed(params.seed)  # before the network is built: it draws the initial weights
    config = evaluator_config(train, val, params)
    model = Evaluator(config).to(device)
    images = torch.from_numpy(np.array(train.images)).to(device)  # uint8 (N, C, S, S), in memory
    labels = torch.from_numpy(np.asarray(train.labels)).to(device)
    steps_per_epoch = max(1, len(train) // params.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=params.learning_rate, total_steps=params.epochs * steps_per_epoch
    )
    shuffle = torch.Generator().manual_seed(params.seed)
    metric = "accuracy" if config.kind == "classifier" else "loss"
    best_score, best_epoch, best_state = -float("inf"), 0, None
    started = time.perf_counter()
    epoch = 0
    for epoch in range(1, params.epochs + 1):
        train_epoch(model, images, labels, optimizer, schedule, shuffle, params)
        value = score_split(model, val, device=device)[metric]
        score = value if metric == "accuracy" else -value  # higher is better
        seconds = time.perf_counter() - started
        log(f"evaluator epoch {epoch}: val {metric} {value:.4f} ({seconds:.0f} s)")
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= params.patience:
            log(f"evaluator: no val improvement for {params.patience} epochs, stopping")
            break
    model.load_state_dict(best_state)
    model.eval()
    summary = {
        "kind": config.kind,
        "epochs": epoch,
        "best_epoch": best_epoch,
        "seconds": round(time.perf_counter() - started, 2),
        f"val_{metric}": best_score if metric == "accuracy" else -best_score,
        "train_images": len(train),
        "device": device.type,
    }
    return model, summary


# ---------------------------------------------------------------- checkpoint


def save_evaluator(
    path: str | Path,
    model: Evaluator,
    meta: dict,
    features: dict[str, tuple[np.ndarray, Features]] | None = None,
) -> None:
    """Write the evaluator checkpoint; `features` caches the features of named image arrays.

    `features` maps a name ("train", ...) to (the uint8 images, their Features). The cache is
    keyed by a digest of the images, so `cached_features` reuses it only for identical arrays.
    """
    config = dataclasses.asdict(model.config)
    config["classes"] = list(config["classes"])
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    cache = {
        name: {
            "digest": image_digest(images),
            "embeddings": torch.from_numpy(found.embeddings),
            "probabilities": None
            if found.probabilities is None
            else torch.from_numpy(found.probabilities),
        }
        for name, (images, found) in (features or {}).items()
    }
    save_checkpoint(
        path,
        {"family": FAMILY, "config": config, "model": state, "meta": meta, "features": cache},
    )


def load_evaluator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Evaluator, dict]:
    """The evaluator saved at `path` (eval mode, on `device`) and its checkpoint dict."""
    checkpoint = load_checkpoint(path)
    if checkpoint["family"] != FAMILY:
        raise CheckpointError(f"{path}: a {checkpoint['family']!r} checkpoint, not the evaluator's")
    try:
        config = dict(checkpoint["config"])
        config["classes"] = tuple(config.get("classes", ()))
        model = Evaluator(EvaluatorConfig(**config))
        model.load_state_dict(checkpoint["model"])
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: evaluator checkpoint does not fit this code: {error}"
        ) from None
    return model.to(device).eval(), checkpoint


# ---------------------------------------------------------------- features


@dataclass
class Features:
    embeddings: np.ndarray  # float32 (N, D)
    probabilities: np.ndarray | None  # float32 (N, K); None for an autoencoder evaluator


@torch.no_grad()
def extract_features(
    model: Evaluator, images: np.ndarray, batch_size: int = 500, device: str | torch.device = "cpu"
) -> Features:
    """Embeddings (and class probabilities) of uint8 images (N, C, S, S), batch by batch."""
    model.eval()
    device = torch.device(device)
    embeddings = np.empty((len(images), model.config.embedding_dim), dtype=np.float32)
    classes = len(model.config.classes)
    probabilities = np.empty((len(images), classes), dtype=np.float32) if model.classifies else None
    for block in _batches(len(images), batch_size):
        embedding = model.embed(_as_float(images[block], device))  # (B, D)
        embeddings[block] = embedding.float().cpu().numpy()
        if probabilities is not None:
            probabilities[block] = model.head(embedding).softmax(dim=1).float().cpu().numpy()
    return Features(embeddings, probabilities)


# ---------------------------------------------------------------- inputs from anywhere


def read_samples(path: str | Path) -> ImageSet:
    """Images to score: an image-set folder, an `.npy` array, or a folder of image files.

    An image-set folder (`aigc.imagesets`) keeps its labels and class names; a folder holding
    only `images.npy` is read as that array. An `.npy` may be uint8 or float in [0, 1], shaped
    (N, C, H, W), (N, H, W, C) or (N, H, W). Image files (any format pillow reads, found
    recursively, in sorted order) are decoded as the clean stage decodes real images (see
    `_decode_files`); `conform` brings everything to the evaluator's channels and size. Labels
    are those of an image set, else all -1.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_dir() and (path / "images.npy").is_file():
        if (path / "labels.npy").is_file() and (path / "classes.json").is_file():
            return load_image_set(path)
        path = path / "images.npy"
    if path.is_file() and path.suffix == ".npy":
        images = _to_nchw_uint8(read_npy(path), path)
        return ImageSet(images, np.full(len(images), -1, dtype=np.int64), [])
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return ImageSet(_decode_files(files), np.full(len(files), -1, dtype=np.int64), [])
    raise ValueError(f"{path}: not an image set, an .npy file or a folder of images")


def _to_nchw_uint8(array: np.ndarray, where: Path) -> np.ndarray:
    """An image array in one of the accepted layouts as uint8 (N, C, H, W)."""
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[1] not in (1, 3, 4) and array.shape[3] in (1, 3, 4):
        array = np.transpose(array, (0, 3, 1, 2))
    if array.ndim != 4 or array.shape[1] not in (1, 3, 4):
        raise ValueError(
            f"{where}: images must be (N, C, H, W), (N, H, W, C) or (N, H, W) with C in 1, 3, 4;"
            f" got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        from aigc.images import to_uint8  # only here: the pipeline's own samples are uint8

        low, high = float(np.min(array)), float(np.max(array))
        if low < -1e-3 or high > 1.0 + 1e-3 or not np.isfinite([low, high]).all():
            raise ValueError(f"{where}: float images must lie in [0, 1], found [{low}, {high}]")
        return to_uint8(np.asarray(array, np.float32))
    raise ValueError(f"{where}: images must be uint8 or float in [0, 1], got {array.dtype}")


def _decode_files(files: list[Path]) -> np.ndarray:
    """Decode image files as uint8 (N, C, H, W) with the clean stage's decoder.

    `aigc.images` checks the size before decoding pixels, turns EXIF-rotated pictures upright,
    and converts every Pillow mode to grey or RGB (16-bit scaled, transparency on white): RGB
    when any file is colour, else grey. Each picture is then resized and centre-cropped to a
    square at the largest side among the files.
    """
    from aigc.images import Rejected, as_array, decode, fit_square, to_channels, upright

    # (imported here: only scoring a folder of image files needs the decoder, so the stages
    # that import this module do not depend on aigc/images.py)
    pictures = []
    for file in files:
        try:
            pictures.append(upright(decode(file.read_bytes(), MAX_PIXELS)))
        except Rejected as error:
            raise ValueError(f"{file}: cannot decode: {error}") from None
    channels = 3 if any(picture.mode not in GREY_MODES for picture in pictures) else 1
    side = max(max(picture.size) for picture in pictures)
    squares = [fit_square(to_channels(p, channels), side, "crop")[0] for p in pictures]
    return np.stack([as_array(square) for square in squares])


def conform(images: np.ndarray, channels: int, size: int) -> np.ndarray:
    """uint8 (N, C, H, W) at `channels` and `size` x `size`, as the evaluator expects.

    Colour becomes grey by ITU-R 601 luma (as pillow's "L"), grey becomes colour by repetition,
    an alpha channel is dropped; a non-square image is cropped to its centred square, then
    resized with antialiased bilinear filtering.
    """
    count, have, height, width = images.shape
    if have == 4:
        images = images[:, :3]
        have = 3
    if (have, height, width) == (channels, size, size):
        return np.asarray(images)
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    conformed = np.empty((count, channels, size, size), dtype=np.uint8)
    for block in _batches(count, 1024):
        batch = torch.from_numpy(
            np.ascontiguousarray(images[block, :, top : top + side, left : left + side])
        ).float()  # (B, have, side, side) in [0, 255]
        if have == 3 and channels == 1:
            luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            batch = (batch * luma).sum(dim=1, keepdim=True)
        elif have == 1 and channels == 3:
            batch = batch.expand(-1, 3, -1, -1)
        if side != size:
            batch = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True)
        conformed[block] = batch.round().clamp(0, 255).to(torch.uint8).numpy()
    return conformed


# ---------------------------------------------------------------- the feature cache


def image_digest(images: np.ndarray) -> str:
    """A digest of a uint8 image array's shape and bytes."""
    digest = hashlib.blake2b(str(images.shape).encode(), digest_size=16)
    for block in _batches(len(images), 4096):
        digest.update(np.ascontiguousarray(images[block]).tobytes())
    return digest.hexdigest()


def cached_features(
    model: Evaluator,
    checkpoint: dict,
    images: np.ndarray,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> tuple[Features, bool]:
    """Features of `images` from the checkpoint's cache when it holds them, else extracted.

    Returns (features, True when they came from the cache).
    """
    digest = image_digest(images)
    for entry in (checkpoint.get("features") or {}).values():
        if entry["digest"] == digest:
            probabilities = entry["probabilities"]
            return Features(
                entry["embeddings"].numpy(),
                None if probabilities is None else probabilities.numpy(),
            ), True
    return extract_features(model, images, batch_size, device), False
