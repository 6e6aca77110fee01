"""An image set on disk: the one folder format that stages hand to each other.

A folder holds `images.npy` (uint8, (N, C, H, W)), `labels.npy` (int64, (N,), -1 = unlabelled)
and `classes.json` (the class names, index = label); an augmented set also holds `origins.npy`
(int64, (N,): the row of the original image each row was made from, so that differentially
private training can count one person's image and its augmented copies as one item). Arrays are
memory-mapped on reading so a stage never needs the whole set in RAM unless it asks for it.

An `ImageSet` is also what the training loop (aigc/training.py) takes for an image family; a
text family takes a `TokenSet` (aigc/text_sets.py). Both offer the same few members the loop
uses: `modality`, `array` (the rows it batches), `labels`, `classes`, `labelled`,
`origin_rows()`, `config_fields()` (the Config fields the data fixes), `to_batch` and `units`.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aigc.files import read_npy, write_json, write_npy


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,), -1 = unlabelled
    classes: list[str]
    origins: np.ndarray | None = None  # int64 (N,): source row of each row; None = its own

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels {self.labels.shape} do not match {len(self.images)} images")
        if self.origins is not None and self.origins.shape != (len(self.images),):
            raise ValueError(f"origins {self.origins.shape} do not match {len(self.images)} images")

    modality = "image"
    unit = "images"  # what `units` counts

    def __len__(self) -> int:
        return len(self.images)

    @property
    def array(self) -> np.ndarray:
        """The rows the training loop batches: the uint8 images."""
        return self.images

    def config_fields(self) -> dict[str, int]:
        """The Config fields the data fixes (aigc.models.base.ImageConfig)."""
        _, channels, size, _ = self.images.shape
        return {"image_size": size, "channels": channels, "num_classes": len(self.classes)}

    @staticmethod
    def to_batch(rows):
        """A batch of `array` rows as a model takes it: float images in [0, 1]."""
        return rows.float().div_(255)

    @staticmethod
    def units(batch) -> int:
        """Images in a batch (the loop's images/s)."""
        return len(batch)

    @property
    def labelled(self) -> bool:
        """True when every item has a class label."""
        return bool(self.classes) and len(self.labels) > 0 and bool((self.labels >= 0).all())

    def origin_rows(self) -> np.ndarray:
        """int64 (N,): the original each row derives from (itself when no origins are kept)."""
        if self.origins is None:
            return np.arange(len(self.images), dtype=np.int64)
        return np.asarray(self.origins, dtype=np.int64)


def load_image_set(folder: str | Path, mmap: bool = True) -> ImageSet:
    """The image set in `folder`; FileNotFoundError naming the folder when there is none."""
    folder = Path(folder)
    if not (folder / "images.npy").is_file():
        reason = "not an image set (no images.npy)" if folder.is_dir() else "no such folder"
        raise FileNotFoundError(errno.ENOENT, reason, str(folder))
    origins = folder / "origins.npy"
    return ImageSet(
        images=read_npy(folder / "images.npy", mmap=mmap),
        labels=np.asarray(read_npy(folder / "labels.npy", mmap=False), dtype=np.int64),
        classes=json.loads((folder / "classes.json").read_text()),
        origins=read_npy(origins, mmap=False) if origins.is_file() else None,
    )


def save_image_set(folder: str | Path, image_set: ImageSet) -> None:
    folder = Path(folder)
    write_npy(folder / "images.npy", np.ascontiguousarray(image_set.images))
    write_npy(folder / "labels.npy", np.asarray(image_set.labels, dtype=np.int64))
    write_json(folder / "classes.json", list(image_set.classes))
    if image_set.origins is not None:
        write_npy(folder / "origins.npy", np.asarray(image_set.origins, dtype=np.int64))
