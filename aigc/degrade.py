"""The training split as an experiment asks for it: a share of it, corrupted on purpose, cleaned.

The `degrade` stage sits between split and augment and touches the training split only, so
the ruler (the evaluator, val and test, the real floor) is the same at every point of a
data-quantity or data-quality sweep. In order:

1. Quantity: `split.train_fraction` keeps a stratified, seeded share of the training split
   (`training_share`).
2. Quality, every share 0 by default and each drawn with `degrade.seed` (`corrupt`):
   - `label_flip`: that share of images gets a wrong class, uniformly among the other classes;
   - `broken`: that share is replaced by broken files, in turn a corrupt PNG (bytes after the
     header scrambled, so a chunk's CRC fails), a blank PNG (one grey level) and a truncated
     PNG (cut at half its length); the image it replaces is lost;
   - `duplicates`: that share of images is added again, in turn as an exact copy (the same
     bytes) and a near copy (Gaussian pixel noise of std `near_noise` grey levels).
   Flips and broken files fall on disjoint images; duplicates copy intact images.
3. The cleaner: with `degrade.clean: true` the corrupted set is packed as a raw folder and
   goes through `aigc.cleaning.clean` with the clean stage's own checks and `clean` params
   (near-duplicates at `degrade.near_duplicate_distance`), which rejects what it can, each
   with its reason in rejected.csv. With `false` every item is kept, as a pipeline without a
   cleaner would have it: what does not decode trains as a black image, and its manifest row
   says why (`problem`).

With every share 0 the data is passed through without encoding anything (`is_noop`): the
cleaner has nothing new to look at, and the stage costs a copy of the split.

The output folder is an image set plus `manifest.csv` (id, origin, split, label, class,
problem), `rejected.csv` (id, origin, reason, detail) and `injected.csv` (one row per
corrupted or added item: id, kind, source id, detail), so that every injected item can be
followed to where it ended: kept, or rejected and why (`DegradeResult.metrics`).
"""

from __future__ import annotations

import io
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from aigc.cleaning import MAX_NEAR_DUPLICATE_DISTANCE, CleanParams, clean, decode_item
from aigc.files import write_text
from aigc.images import Rejected
from aigc.imagesets import ImageSet, save_image_set
from aigc.params import ParamsError, spec
from aigc.sources import Collection, DataParams, RawItem, write_raw
from aigc.splits import stratified_take

BROKEN_KINDS = ("corrupt", "blank", "truncated")
DUPLICATE_KINDS = ("exact_duplicate", "near_duplicate")
KINDS = ("label_flip", *BROKEN_KINDS, *DUPLICATE_KINDS)
# What the cleaner should call each injected kind (label flips it cannot see).
EXPECTED_REASON = {
    "corrupt": "corrupt", "blank": "blank", "truncated": "truncated",
    "exact_duplicate": "duplicate", "near_duplicate": "near_duplicate",
}  # fmt: skip


@dataclass(frozen=True)
class DegradeParams:
    """params.yaml `degrade`."""

    label_flip: float = spec(ge=0.0, le=1.0, doc="share of images given a wrong class")
    broken: float = spec(ge=0.0, le=1.0, doc="share of images replaced by broken files")
    duplicates: float = spec(ge=0.0, le=1.0, doc="share of images added again as copies")
    near_noise: float = spec(gt=0.0, le=64.0, doc="pixel noise std (grey levels) of a near copy")
    clean: bool = spec(doc="run the cleaner over the corrupted set (false: keep everything)")
    near_duplicate_distance: int = spec(
        ge=-1, le=MAX_NEAR_DUPLICATE_DISTANCE, doc="the cleaner's pHash distance (-1 = off)"
    )
    seed: int = spec(ge=0, doc="seed of every draw")

    def __post_init__(self) -> None:
        if self.label_flip + self.broken > 1.0:
            raise ParamsError(
                f"degrade.label_flip + degrade.broken = {self.label_flip + self.broken:g}: "
                "they fall on disjoint images, so their sum must be at most 1"
            )

    @property
    def is_noop(self) -> bool:
        return self.label_flip == 0 and self.broken == 0 and self.duplicates == 0


def training_share(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted rows of a stratified, seeded `fraction` of a training split (all rows at 1)."""
    rows = np.arange(len(labels))
    if fraction >= 1.0:
        return rows
    taken, _ = stratified_take(labels, rows, fraction, np.random.default_rng(seed))
    return taken


@dataclass
class Corruption:
    """The corrupted set before cleaning: one raw item per row, and what was done to which."""

    items: list[RawItem]
    injected: pd.DataFrame  # id (row of items), kind, source (split id), detail


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (C, H, W) as PNG bytes (grey for C = 1, RGB for C = 3); deterministic."""
    array = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def broken_file(kind: str, pixels: np.ndarray, generator: np.random.Generator) -> bytes:
    """A broken stand-in for `pixels`: "corrupt", "blank" or "truncated" PNG bytes."""
    if kind == "blank":
        grey = int(pixels.mean())
        return encode_png(np.full_like(pixels, grey))
    data = bytearray(encode_png(pixels))
    if kind == "truncated":
        return bytes(data[: len(data) // 2])
    start = 33 + 8  # after the signature (8) and IHDR (25): inside the first IDAT's data
    end = max(start + 1, len(data) - 12)  # before the IEND chunk
    scrambled = generator.integers(0, 256, size=end - start, dtype=np.uint8)
    data[start:end] = scrambled.tobytes()
    return bytes(data)


def near_copy(pixels: np.ndarray, noise: float, generator: np.random.Generator) -> np.ndarray:
    """`pixels` plus rounded Gaussian noise of std `noise`, never identical to them."""
    noisy = pixels.astype(np.float64) + generator.normal(0.0, noise, size=pixels.shape)
    copy = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if np.array_equal(copy, pixels):  # so that the copy is near, not exact
        flat = copy.reshape(-1)
        flat[0] = flat[0] + 1 if flat[0] < 255 else 254
    return copy


def corrupt(
    images: np.ndarray, labels: np.ndarray, ids: np.ndarray, classes: int, params: DegradeParams
) -> Corruption:
    """The images (uint8 (N, C, H, W)) with labels and split ids, corrupted as `params` asks."""
    generator = np.random.default_rng(params.seed)
    count = len(images)
    order = generator.permutation(count)
    flips = int(round(params.label_flip * count))
    broken = int(round(params.broken * count))
    flipped, replaced = order[:flips], order[flips : flips + broken]
    kind_of = {int(row): BROKEN_KINDS[k % 3] for k, row in enumerate(np.sort(replaced))}
    new_label = labels.copy()
    if classes > 1 and flips:
        shift = generator.integers(1, classes, size=flips)
        new_label[flipped] = (labels[flipped] + shift) % classes

    items, injected = [], []
    for row in range(count):
        origin = f"split/train#{ids[row]}"
        if row in kind_of:
            data = broken_file(kind_of[row], images[row], generator)
            injected.append((row, kind_of[row], ids[row], f"{kind_of[row]} file in place of it"))
        else:
            data = encode_png(images[row])
        items.append(RawItem(origin, data, int(new_label[row]), "train", "encoded"))
    for row in flipped:
        detail = f"label {labels[row]} -> {new_label[row]}"
        injected.append((int(row), "label_flip", ids[row], detail))

    intact = np.setdiff1d(np.arange(count), replaced)
    copies = int(round(params.duplicates * count))
    sources = generator.choice(intact, size=copies, replace=copies > len(intact)) if copies else []
    for k, row in enumerate(np.asarray(sources, dtype=np.int64)):
        kind = DUPLICATE_KINDS[k % 2]
        if kind == "exact_duplicate":
            data = items[row].data
        else:
            data = encode_png(near_copy(images[row], params.near_noise, generator))
        injected.append((len(items), kind, ids[row], f"{kind.replace('_', ' ')} of it"))
        origin = f"{kind}#{k} of split/train#{ids[row]}"
        items.append(RawItem(origin, data, int(new_label[row]), "train", "encoded"))
    table = pd.DataFrame(injected, columns=["id", "kind", "source", "detail"])
    return Corruption(items, table.sort_values(["id", "kind"], ignore_index=True))


@dataclass
class DegradeResult:
    split_images: int  # images in the training split
    share: int  # images in the train_fraction share of it
    injected: pd.DataFrame  # id, kind, source, detail
    rejected: pd.DataFrame  # id, origin, reason, detail
    manifest: pd.DataFrame  # the kept rows; `problem` says why one did not decode (cleaner off)
    cleaner: bool
    fraction: float

    def metrics(self) -> dict:
        """Counts of what was injected, what the cleaner caught and what trains."""
        injected = Counter(self.injected["kind"])
        rejected_ids = set(self.rejected["id"].tolist())
        caught, left = Counter(), Counter()
        for row in self.injected.itertuples():
            (caught if row.id in rejected_ids else left)[row.kind] += 1
        reasons = Counter(self.rejected["reason"])
        injected_total = sum(injected[k] for k in KINDS if k != "label_flip")
        caught_total = sum(caught[k] for k in KINDS if k != "label_flip")
        return {
            "train_fraction": self.fraction,
            "split_images": self.split_images,
            "share": self.share,
            "cleaner": self.cleaner,
            "images": len(self.manifest),
            "injected": {kind: injected.get(kind, 0) for kind in KINDS},
            "caught": {kind: caught.get(kind, 0) for kind in KINDS},
            "left": {kind: left.get(kind, 0) for kind in KINDS},
            "caught_share": caught_total / injected_total if injected_total else None,
            "rejected": len(self.rejected),
            "rejected_by_reason": dict(sorted(reasons.items())),
            "rejected_clean_images": len(rejected_ids - set(self.injected["id"].tolist())),
            "undecodable_kept": int((self.manifest["problem"] != "").sum()),
        }


def degrade(
    split_train: ImageSet,
    split_manifest: pd.DataFrame,
    out: str | Path,
    fraction: float,
    split_seed: int,
    params: DegradeParams,
    data: DataParams,
    clean_params: CleanParams,
) -> DegradeResult:
    """Write the degraded training set into `out`; `split_manifest` is the split's rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = training_share(split_train.labels, fraction, split_seed)
    images = np.asarray(split_train.images[rows])
    labels = split_train.labels[rows]
    ids = split_manifest["id"].to_numpy()[rows]
    empty = pd.DataFrame(columns=["id", "origin", "reason", "detail"])
    if params.is_noop:
        manifest = split_manifest.iloc[rows].reset_index(drop=True)
        _write(out, ImageSet(images, labels, split_train.classes), manifest, empty)
        injected = pd.DataFrame(columns=["id", "kind", "source", "detail"])
        write_text(out / "injected.csv", injected.to_csv(index=False))
        manifest["problem"] = ""
        return DegradeResult(len(split_train), len(rows), injected, empty, manifest,
                             params.clean, fraction)  # fmt: skip

    if params.label_flip and (not split_train.labelled or len(split_train.classes) < 2):
        raise ParamsError(
            f"degrade.label_flip = {params.label_flip:g} needs labels of at least two classes; "
            f"this training set has {len(split_train.classes)} (set it to 0)"
        )
    corruption = corrupt(images, labels, ids, len(split_train.classes), params)
    write_text(out / "injected.csv", corruption.injected.to_csv(index=False))
    data = replace(data, image_size=images.shape[-1], channels=images.shape[1], fit="pad",
                   classes=())  # fmt: skip
    if params.clean:
        cleaner = replace(clean_params, near_duplicate_distance=params.near_duplicate_distance)
        with tempfile.TemporaryDirectory(dir=out) as scratch:
            write_raw(scratch, Collection(list(split_train.classes), corruption.items))
            result = clean(scratch, out, data, cleaner)
        manifest, rejected = result.manifest, result.rejected
        manifest["problem"] = ""
        write_text(out / "manifest.csv", manifest.to_csv(index=False))
    else:
        manifest = unchecked(out, corruption.items, split_train.classes, data, clean_params)
        rejected = empty
    return DegradeResult(len(split_train), len(rows), corruption.injected, rejected, manifest,
                         params.clean, fraction)  # fmt: skip


def unchecked(
    out: Path, items: list[RawItem], classes: list[str], data: DataParams, clean_params: CleanParams
) -> pd.DataFrame:
    """Write every item as an image set without the cleaner's checks (a black image where the
    bytes do not decode, its reason in the manifest's `problem`); the manifest."""
    shape = (data.channels, data.image_size, data.image_size)
    pixels = np.zeros((len(items), *shape), np.uint8)
    problems = []
    for row, item in enumerate(items):
        try:
            pixels[row] = decode_item(item.data, item.format, data, clean_params)[0]
            problems.append("")
        except Rejected as rejection:  # trains as a black image, as an unchecked loader's would
            problems.append(f"{rejection.reason}: {rejection.detail}")
    labels = np.asarray([item.label for item in items], np.int64)
    manifest = pd.DataFrame({
        "id": np.arange(len(items)),
        "origin": [item.origin for item in items],
        "split": "train",
        "label": labels,
        "class": [classes[label] for label in labels],
        "problem": problems,
    })  # fmt: skip
    empty = pd.DataFrame(columns=["id", "origin", "reason", "detail"])
    _write(out, ImageSet(pixels, labels, classes), manifest, empty)
    return manifest


def _write(out: Path, image_set: ImageSet, manifest: pd.DataFrame, rejected: pd.DataFrame) -> None:
    save_image_set(out, image_set)
    write_text(out / "manifest.csv", manifest.to_csv(index=False))
    write_text(out / "rejected.csv", rejected.to_csv(index=False))
