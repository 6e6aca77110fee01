"""Atomic writing of every kind of output the pipeline makes.

Each writer puts the bytes in a temporary file beside the target and renames it into place, so
a killed stage leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        # mkstemp makes the file private (0600); give it the mode an ordinary file would get.
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces `path` when the block succeeds."""
    with atomic_path(path) as temporary, open(temporary, mode) as handle:
        yield handle


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: str | Path, value: Any) -> None:
    """Pretty, key-sorted JSON (diffs well in git and in `dvc metrics diff`)."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def read_npy(path: str | Path, mmap: bool = True) -> np.ndarray:
    """An `.npy` array, memory-mapped by default; object arrays are refused."""
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


@contextlib.contextmanager
def atomic_memmap(path: str | Path, shape: tuple[int, ...], dtype=np.uint8) -> Iterator[np.ndarray]:
    """A writable memory-mapped `.npy` of `shape` to fill in place; renamed onto `path` on success.

    Lets a stage write an array larger than RAM chunk by chunk (clean, split, augment).
    """
    with atomic_path(path) as temporary:
        if 0 in shape:  # an empty array cannot be memory-mapped
            empty = np.zeros(shape, dtype=dtype)
            yield empty
            with open(temporary, "wb") as handle:
                np.save(handle, empty, allow_pickle=False)
            return
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=shape)
        yield array
        array.flush()
        del array


def release_pages(mapped: np.ndarray | mmap.mmap) -> None:
    """Flush a memory-mapped array (or mmap) and drop its pages from this process's memory.

    The data stays in the file and the OS page cache; only the process's resident size shrinks,
    so a stage streaming files larger than RAM keeps a bounded footprint. A no-op for arrays
    that are not memory-mapped or where madvise is missing.
    """
    mapping = mapped if isinstance(mapped, mmap.mmap) else getattr(mapped, "_mmap", None)
    if mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    if isinstance(mapped, np.memmap) and mapped.mode != "r":
        mapped.flush()
    mapping.madvise(mmap.MADV_DONTNEED)
