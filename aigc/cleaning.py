"""Cleaning a raw folder into an image set: checks, deduplication, chunked memory-mapped writing.

Every raw item ends up either kept or rejected with a reason; the checks run in this order:

    error from collect (unsafe_path, symlink, hardlink, special_file, unreadable, too_large)
    empty          zero bytes
    bad_label      label outside the class list, no label in a labelled source, or a class
                   not in `data.classes` when that is non-empty
    duplicate      the same bytes as a kept item
    too_large      more than `clean.max_pixels` pixels, read from the header before decoding
    not_an_image   no image format's signature (magic bytes) at the start
    truncated      an image format's signature, but the bytes end early (a PNG before IEND)
    corrupt        an image format's signature, but the bytes after it do not decode
    blank          pixel std (0-255, most varied channel) of the content, padding excluded,
                   under `clean.blank_std`
    duplicate      the same normalised pixels as a kept item
    near_duplicate a 64-bit perceptual hash within `clean.near_duplicate_distance` bits of a kept
                   item's (greedy in collection order: the first of a group is kept)

Memory stays bounded: items are decoded `clean.chunk_size` at a time into a memory-mapped
staging array; only the kept rows are copied, chunk by chunk, into the final `images.npy`.
"""

from __future__ import annotations

import hashlib
import json
import mmap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from aigc.files import atomic_memmap, release_pages, write_json, write_npy, write_text
from aigc.images import (
    Rejected,
    as_array,
    box_std,
    decode,
    decode_idx,
    fit_square,
    pad_batch,
    perceptual_hashes,
    to_channels,
    upright,
)
from aigc.params import spec
from aigc.sources import IDX_SIDE, DataParams, class_mapping, read_manifest

REASONS = (
    "unsafe_path", "symlink", "hardlink", "special_file", "unreadable", "empty", "bad_label",
    "duplicate", "too_large", "not_an_image", "truncated", "corrupt", "blank",
    "near_duplicate",
)  # fmt: skip
MAX_NEAR_DUPLICATE_DISTANCE = 8  # above this the band search examines too many pairs


@dataclass(frozen=True)
class CleanParams:
    """params.yaml `clean`."""

    max_pixels: int = spec(ge=1, doc="decoded pixel count above which an image is rejected")
    near_duplicate_distance: int = spec(
        ge=-1, le=MAX_NEAR_DUPLICATE_DISTANCE, doc="max pHash Hamming distance (-1 = off)"
    )
    blank_std: float = spec(ge=0.0, le=255.0, doc="pixel std under which an image is blank")
    chunk_size: int = spec(ge=1, le=1_000_000, doc="images decoded per chunk")
    alpha_background: int = spec(ge=0, le=255, doc="grey that transparency is composited onto")


@dataclass
class CleanResult:
    manifest: pd.DataFrame  # kept items: id, origin, split, label, class
    rejected: pd.DataFrame  # id, origin, reason, detail
    classes: list[str]
    collected: int

    def metrics(self) -> dict:
        by_reason = Counter(self.rejected["reason"])
        per_class = Counter(self.manifest["class"].replace("", "unlabelled"))
        return {
            "collected": self.collected,
            "kept": len(self.manifest),
            "rejected": len(self.rejected),
            "rejected_by_reason": {reason: by_reason.get(reason, 0) for reason in REASONS}
            | dict(by_reason),
            "images_per_class": {name: per_class.get(name, 0) for name in self.classes}
            | dict(per_class),
        }


@dataclass
class _Staged:
    """Items that passed every per-item check, in order: their rows in the staging array."""

    positions: list[int] = field(default_factory=list)  # manifest row of each staged image
    labels: list[int] = field(default_factory=list)
    hashes: list[np.ndarray] = field(default_factory=list)  # uint64 pHash chunks


def clean(raw: str | Path, out: str | Path, data: DataParams, params: CleanParams) -> CleanResult:
    """Decode, check and normalise every item of `raw`; write the image set into `out`."""
    raw, out = Path(raw), Path(out)
    manifest = read_manifest(raw / "manifest.csv")
    source_classes = json.loads((raw / "classes.json").read_text())
    classes, label_map = class_mapping(source_classes, data.classes)
    out.mkdir(parents=True, exist_ok=True)
    shape = (data.channels, data.image_size, data.image_size)

    rejected: dict[int, tuple[str, str]] = {}  # manifest row -> (reason, detail)
    staged = _Staged()
    staging_path = out / ".staging.npy"
    staging = np.lib.format.open_memmap(
        staging_path, mode="w+", dtype=np.uint8, shape=(max(len(manifest), 1), *shape)
    )
    try:
        with open(raw / "items.bin", "rb") as handle:
            size = (raw / "items.bin").stat().st_size
            items = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            checker = _Checker(manifest, classes, label_map, data, params, rejected)
            for start in range(0, len(manifest), params.chunk_size):
                rows = range(start, min(start + params.chunk_size, len(manifest)))
                checker.run_chunk(rows, items, staging, staged)
                release_pages(staging)  # keep memory bounded: the pages live on in the files
                if size:
                    release_pages(items)
        hashes = np.concatenate(staged.hashes) if staged.hashes else np.zeros(0, np.uint64)
        near = near_duplicates(hashes, params.near_duplicate_distance)
        for later, (earlier, distance) in near.items():
            kept_row = staged.positions[earlier]
            rejected[staged.positions[later]] = (
                "near_duplicate",
                f"perceptual hash {distance} bits from item {manifest.id[kept_row]} "
                f"({manifest.origin[kept_row]}), which is kept",
            )
        keep = np.array([i for i in range(len(staged.positions)) if i not in near], np.int64)
        if len(keep) + len(rejected) != len(manifest):  # nothing lost, checked before writing
            raise AssertionError(
                f"kept {len(keep)} + rejected {len(rejected)} != collected {len(manifest)}"
            )
        with atomic_memmap(out / "images.npy", (len(keep), *shape)) as images:
            for start in range(0, len(keep), params.chunk_size):
                block = keep[start : start + params.chunk_size]
                images[start : start + len(block)] = staging[block]
                release_pages(images)
                release_pages(staging)
    finally:
        del staging
        staging_path.unlink(missing_ok=True)

    kept_rows = np.asarray(staged.positions, dtype=np.int64)[keep]
    labels = np.asarray(staged.labels, dtype=np.int64)[keep]
    kept = manifest.iloc[kept_rows][["id", "origin", "split"]].reset_index(drop=True)
    kept["label"] = labels
    kept["class"] = [classes[label] if label >= 0 else "" for label in labels]
    order = sorted(rejected)
    rejections = pd.DataFrame(
        {
            "id": manifest.id.to_numpy()[order],
            "origin": manifest.origin.to_numpy()[order],
            "reason": [rejected[row][0] for row in order],
            "detail": [rejected[row][1] for row in order],
        }
    )
    write_npy(out / "labels.npy", labels)
    write_json(out / "classes.json", classes)
    write_text(out / "manifest.csv", kept.to_csv(index=False))
    write_text(out / "rejected.csv", rejections.to_csv(index=False))
    return CleanResult(kept, rejections, classes, len(manifest))


def decode_item(
    data: bytes, kind: str, params: DataParams, clean_params: CleanParams
) -> tuple[np.ndarray, tuple]:
    """One raw item's bytes (`kind` "idx" or "encoded") as uint8 (C, size, size) pixels, fitted
    to the square, and the content box inside it; Rejected when they do not decode."""
    if kind == "idx":
        image = decode_idx(data)
    else:
        image = decode(data, clean_params.max_pixels, draft_size=params.image_size)
    image = to_channels(upright(image), params.channels, clean_params.alpha_background)
    square, box = fit_square(image, params.image_size, params.fit)
    return as_array(square), box


class _Checker:
    """The per-item checks, with the hashes of kept bytes and pixels seen so far.

    A chunk goes through three passes: per item, the checks before decoding and the decoding
    itself (IDX pixels that only need padding are gathered in one numpy step instead); then the
    blank test, vectorised over the chunk; then, in order, the duplicate tests, which need every
    earlier decision. Kept images end up contiguous at the front of the chunk's staging rows.
    """

    def __init__(self, manifest, classes, label_map, data: DataParams, params, rejected) -> None:
        self.classes = classes
        self.label_map = label_map
        self.data = data
        self.params = params
        self.rejected = rejected
        self.kept_bytes: dict[str, int] = {}  # sha256 of the bytes -> manifest row
        self.kept_pixels: dict[bytes, int] = {}  # sha256 of the normalised pixels -> manifest row
        # columns as plain lists: pandas row access is slow in a 70k-item loop
        self.columns = {name: manifest[name].tolist() for name in manifest.columns}
        size = data.image_size
        self.pad_idx = (data.fit == "pad" and size >= IDX_SIDE) or size == IDX_SIDE

    def run_chunk(self, rows: range, items, staging: np.ndarray, staged: _Staged) -> None:
        first = len(staged.positions)
        decoded = []  # (row, label) of every item decoded into staging[first + k]
        boxes = []  # content box of each
        idx_slots, idx_rows = [], []  # IDX items gathered in one step after the loop
        for row in rows:
            try:
                label = self._check_before_decoding(row)
                if self.pad_idx and self._is_idx(row):
                    idx_slots.append(len(decoded))
                    idx_rows.append(row)
                    boxes.append(None)
                else:
                    pixels, box = self._decoded(row, items)
                    staging[first + len(decoded)] = pixels
                    boxes.append(box)
            except Rejected as rejection:
                self.rejected[row] = (rejection.reason, rejection.detail)
                continue
            decoded.append((row, label))
        if idx_rows:
            pixels, box = self._idx_batch(idx_rows, items)
            staging[first + np.asarray(idx_slots)] = pixels
            for slot in idx_slots:
                boxes[slot] = box
        block = np.array(staging[first : first + len(decoded)])  # (n, C, H, W), a copy
        spread = box_std(block, np.asarray(boxes, dtype=np.int64).reshape(-1, 4))
        kept_slots = []
        for slot, (row, label) in enumerate(decoded):
            try:
                self._check_after_decoding(row, block[slot], spread[slot])
            except Rejected as rejection:
                self.rejected[row] = (rejection.reason, rejection.detail)
                continue
            kept_slots.append(slot)
            staged.positions.append(row)
            staged.labels.append(label)
        kept = block[kept_slots]
        staging[first : first + len(kept_slots)] = kept
        staged.hashes.append(perceptual_hashes(kept))

    def _is_idx(self, row: int) -> bool:
        size = self.columns["size"][row]
        return self.columns["format"][row] == "idx" and size == IDX_SIDE * IDX_SIDE

    def _check_before_decoding(self, row: int) -> int:
        """The kept label of `row`, or Rejected for a collect error, no bytes, a bad label."""
        error = self.columns["error"][row]
        if error:
            raise Rejected(error, self.columns["detail"][row])
        if self.columns["size"][row] == 0:
            raise Rejected("empty", "zero-byte file")
        label = self.columns["label"][row]
        if self.classes and label < 0:
            raise Rejected("bad_label", "no class: a file outside the class subfolders")
        if self.classes and label not in self.label_map:
            name = self.columns["class"][row]
            if name:
                raise Rejected("bad_label", f"class {name!r} is not in data.classes")
            raise Rejected("bad_label", f"label {label} is outside the {len(self.classes)} classes")
        digest = self.columns["sha256"][row]
        if digest in self.kept_bytes:  # kept in an earlier chunk: no need to decode
            raise Rejected("duplicate", "same bytes as " + self._name(self.kept_bytes[digest]))
        return self.label_map[label] if self.classes else -1

    def _decoded(self, row: int, items) -> tuple[np.ndarray, tuple]:
        """One item as uint8 (C, size, size) and its content box, or Rejected."""
        offset, size = self.columns["offset"][row], self.columns["size"][row]
        data = bytes(items[offset : offset + size])
        return decode_item(data, self.columns["format"][row], self.data, self.params)

    def _idx_batch(self, rows: list[int], items) -> tuple[np.ndarray, tuple]:
        """IDX items (28x28 grey) padded to size x size in one numpy step."""
        offsets = np.asarray([self.columns["offset"][row] for row in rows], dtype=np.int64)
        flat = np.frombuffer(items, dtype=np.uint8)
        pixels = flat[offsets[:, None] + np.arange(IDX_SIDE * IDX_SIDE)]  # (n, 784)
        pixels = pixels.reshape(len(rows), 1, IDX_SIDE, IDX_SIDE)
        pixels = np.repeat(pixels, self.data.channels, axis=1)  # grey -> RGB is a copy per channel
        return pad_batch(pixels, self.data.image_size)

    def _check_after_decoding(self, row: int, pixels: np.ndarray, spread: float) -> None:
        """Rejected for a blank image or a duplicate of a kept one; else registers it as kept."""
        if spread < self.params.blank_std:
            limit = self.params.blank_std
            raise Rejected("blank", f"pixel std {spread:.2f} is under clean.blank_std = {limit}")
        digest = self.columns["sha256"][row]
        if digest in self.kept_bytes:
            raise Rejected("duplicate", "same bytes as " + self._name(self.kept_bytes[digest]))
        pixel_digest = hashlib.sha256(pixels.tobytes()).digest()
        if pixel_digest in self.kept_pixels:
            kept = self._name(self.kept_pixels[pixel_digest])
            raise Rejected("duplicate", f"same pixels after normalisation as {kept}")
        self.kept_bytes[digest] = row
        self.kept_pixels[pixel_digest] = row

    def _name(self, row: int) -> str:
        return f"item {self.columns['id'][row]} ({self.columns['origin'][row]}), which is kept"


def near_duplicates(hashes: np.ndarray, max_distance: int) -> dict[int, tuple[int, int]]:
    """Greedy near-duplicate removal over uint64 hashes, in order.

    Item j is rejected when an earlier item i that is itself kept lies within `max_distance`
    bits; returns {j: (i, distance)} (i the earliest such item). -1 turns the search off.
    """
    if max_distance < 0 or len(hashes) < 2:
        return {}
    pairs, distances = close_pairs(hashes, max_distance)
    rejected: dict[int, tuple[int, int]] = {}
    for (i, j), distance in zip(pairs.tolist(), distances.tolist(), strict=True):
        if j not in rejected and i not in rejected:
            rejected[j] = (i, distance)
    return rejected


def close_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) within `max_distance` bits, sorted by (j, i), and their distances.

    Multi-index hashing (Norouzi, Punjani & Fleet 2012, https://arxiv.org/abs/1307.2982): cut
    the 64 bits into max_distance + 1 bands; two hashes within max_distance bits agree exactly on
    at least one band (pigeonhole), so only items sharing a band value are compared. On 70k
    Fashion-MNIST hashes that is ~2k comparisons at distance 0, ~6M at 2, ~0.5G at 8, not 2.5G.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    count = len(hashes)
    edges = np.linspace(0, 64, max_distance + 2).round().astype(int)
    found = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        keys = (hashes >> np.uint64(low)) & np.uint64((1 << int(high - low)) - 1)
        order = np.argsort(keys, kind="stable")
        boundaries = np.flatnonzero(np.diff(keys[order])) + 1
        starts = np.concatenate([[0], boundaries])
        ends = np.concatenate([boundaries, [count]])
        for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
            found.append(_pairs_in_group(hashes, np.sort(order[start:end]), max_distance))
    if not found:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    pairs = np.concatenate([p for p, _ in found])
    distances = np.concatenate([d for _, d in found])
    _, first = np.unique(pairs[:, 1] * count + pairs[:, 0], return_index=True)  # by (j, i)
    return pairs[first], distances[first]


def _pairs_in_group(
    hashes: np.ndarray, members: np.ndarray, max_distance: int, block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of `members` (sorted) within `max_distance` bits, a block of rows at a time."""
    pairs, distances = [], []
    member_hashes = hashes[members]
    for start in range(0, len(members) - 1, block):
        rows = member_hashes[start : start + block, None]  # (b, 1)
        columns = member_hashes[None, start + 1 :]  # (1, m): only later members
        distance = np.bitwise_count(rows ^ columns)  # (b, m)
        row, column = np.nonzero(distance <= max_distance)
        column_index = column + start + 1
        later = column_index > row + start
        row, column, column_index = row[later], column[later], column_index[later]
        pairs.append(np.stack([members[row + start], members[column_index]], axis=1))
        distances.append(distance[row, column].astype(np.int64))
    return np.concatenate(pairs), np.concatenate(distances)
