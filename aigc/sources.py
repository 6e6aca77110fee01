"""Where items come from: (Fashion-)MNIST IDX files, a folder, an archive, a URL, or `shapes`.

`data.source` names one of:

- `fashion-mnist`, `mnist`: the four official IDX `.gz` files, looked up in `$AIGC_DATA_DIR/NAME/`,
  then `/usr/share/datasets/NAME/` (Debian: `sudo apt-get install dataset-fashion-mnist`), then
  the download cache `~/.cache/aigc/NAME/`. Each file is verified by sha256 (of the official `.gz`
  or of its decompressed content: Debian re-gzips the files, which changes the `.gz` bytes but not
  the content). Missing files are downloaded only when `data.download: true` (sha256-checked,
  written atomically into `$AIGC_DATA_DIR/NAME/`, else the cache). The official train/test split
  is kept in the manifest's `split` column.
- `folder:PATH`: a class per subfolder (nested folders belong to their top-level class); a flat
  folder is unlabelled (label -1). Every file is an item, whatever its name: clean decides what
  Pillow can read. Symlinks pointing outside the folder, dangling symlinks and directory symlinks
  are recorded, not followed; FIFOs and devices are recorded, never opened.
  DVC cannot see a folder's content through params (only the text `folder:PATH` is tracked), so
  after the folder's files change run `dvc repro -f collect` (downstream stages then re-run only
  if the collected bytes changed).
- `archive:PATH`: a zip or tar (gz/bz2/xz) read member by member, straight into `items.bin`,
  never extracted to disk. Entries with absolute paths or `..` components, symlinks, hard links
  and device files are recorded as rejected items with the reason. A single top-level folder
  wrapping everything is ignored; below it the layout is read like a folder's.
- `url:URL#sha256=HEX`: downloaded, verified, then read as an archive or as a single image.
- `shapes`: procedural labelled shapes (circle, ring, square, ...) drawn with PIL at seeded
  random position, size and grey levels; always available offline, used by the tests.

Every source yields `RawItem`s; `write_raw` packs them into the raw folder:

    items.bin     the bytes of every item as collected, concatenated (no thousands of small files)
    manifest.csv  id, origin, split, label, class, sha256, offset, size, format, error, detail
    classes.json  the class names (index = label); [] for an unlabelled source

`format` is `idx` (28x28 uint8 pixels, row-major) or `encoded` (bytes for Pillow to decode).
An item that cannot even be read (unsafe archive path, symlink out of the tree, unreadable file)
still gets a row, with `error` (the reason clean rejects it with) and a human `detail`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from aigc.files import atomic_open, write_json, write_text
from aigc.params import ParamsError, spec

MANIFEST_COLUMNS = [
    "id", "origin", "split", "label", "class", "sha256", "offset", "size", "format", "error",
    "detail",
]  # fmt: skip
MAX_ITEM_BYTES = 1 << 30  # a single file above 1 GiB is recorded as too_large, never read
IDX_SIDE = 28

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MNIST_CLASSES = tuple(str(digit) for digit in range(10))


@dataclass(frozen=True)
class IdxFile:
    name: str
    gz_sha256: str  # sha256 of the official .gz file
    content_sha256: str  # sha256 of its decompressed content (same in any re-gzipped copy)


@dataclass(frozen=True)
class IdxSet:
    classes: tuple[str, ...]
    urls: tuple[str, ...]  # base addresses tried in order; every file is sha256-checked
    files: dict[str, IdxFile]  # "train-images", "train-labels", "test-images", "test-labels"


# Official sha256 sums: Fashion-MNIST from github.com/zalandoresearch/fashion-mnist (README);
# MNIST as served from yann.lecun.com/exdb/mnist (also listed by torchvision and TFDS).
IDX_SETS = {
    "fashion-mnist": IdxSet(
        classes=FASHION_MNIST_CLASSES,
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        files={
            "train-images": IdxFile(
                "train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            "train-labels": IdxFile(
                "train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
            "test-images": IdxFile(
                "t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ),
            "test-labels": IdxFile(
                "t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        },
    ),
    "mnist": IdxSet(
        classes=MNIST_CLASSES,
        # The official page stopped serving the files; PyTorch's mirror holds the same bytes.
        urls=(
            "https://yann.lecun.com/exdb/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        files={
            "train-images": IdxFile(
                "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            "train-labels": IdxFile(
                "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            "test-images": IdxFile(
                "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            "test-labels": IdxFile(
                "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        },
    ),
}

SYSTEM_DATASETS = Path("/usr/share/datasets")  # where Debian's dataset-* packages install

SHAPES = ("circle", "ring", "square", "frame", "triangle", "diamond", "cross", "bar")
SHAPES_SEED = 0
SHAPES_SIDE = 32

_URL_SOURCE = re.compile(r"^url:(?P<url>[^#\s]+)#sha256=(?P<sha256>[0-9a-fA-F]{64})$")


class SourceError(RuntimeError):
    """The source as a whole cannot be collected (missing files, bad checksum, not an archive)."""


@dataclass(frozen=True)
class DataParams:
    """params.yaml `data`: what the pipeline learns from (read by collect and clean)."""

    source: str = spec(doc="fashion-mnist | mnist | shapes | folder:PATH | archive:PATH | url:...")
    download: bool = spec(doc="fetch missing IDX files from the official address")
    image_size: int = spec(ge=8, le=1024, doc="side of the square images")
    channels: int = spec(choices=(1, 3), doc="1 (grey) or 3 (RGB)")
    fit: str = spec(choices=("pad", "crop"), doc="how an image of another shape becomes square")
    classes: tuple[str, ...] = spec(doc="class names kept; [] keeps all")
    shapes_per_class: int = spec(ge=1, le=1_000_000, doc="items per class of `shapes`")

    def __post_init__(self) -> None:
        check_source(self.source)
        if len(set(self.classes)) != len(self.classes):
            raise ParamsError(f"data.classes = {list(self.classes)} names a class twice")


def check_source(source: str) -> None:
    """Raise ParamsError naming `data.source` when `source` has none of the allowed forms."""
    if source in IDX_SETS or source == "shapes":
        return
    kind, _, rest = source.partition(":")
    if kind in ("folder", "archive") and rest:
        return
    if kind == "url":
        if _URL_SOURCE.match(source):
            return
        raise ParamsError(
            f"data.source = {source!r}: a URL source must end in #sha256=<64 hex digits>"
        )
    raise ParamsError(
        f"data.source = {source!r} is not allowed; allowed: fashion-mnist, mnist, shapes, "
        "folder:PATH, archive:PATH, url:URL#sha256=HEX"
    )


@dataclass
class RawItem:
    origin: str  # where it came from: a file path, an archive member, "file.gz#index"
    data: bytes = b""
    label: int = -1
    split: str = ""  # "train" | "test" | "" (no official split)
    format: str = "encoded"  # "idx" (28x28 uint8 pixels) | "encoded" (for Pillow)
    error: str = ""  # reason clean rejects it with, when it could not be collected
    detail: str = ""


@dataclass
class Collection:
    classes: list[str]
    items: Iterable[RawItem]


# ---------------------------------------------------------------------------------------------
# Writing the raw folder


def write_raw(folder: str | Path, collection: Collection) -> int:
    """Pack `collection` into `folder` (items.bin, manifest.csv, classes.json): the item count."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    offset = 0
    with atomic_open(folder / "items.bin", "wb") as handle:
        for index, item in enumerate(collection.items):
            handle.write(item.data)
            label_ok = 0 <= item.label < len(collection.classes)
            rows.append(
                (
                    index, item.origin, item.split, item.label,
                    collection.classes[item.label] if label_ok else "",
                    hashlib.sha256(item.data).hexdigest(), offset, len(item.data),
                    item.format, item.error, item.detail,
                )
            )  # fmt: skip
            offset += len(item.data)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    write_text(folder / "manifest.csv", manifest.to_csv(index=False))
    write_json(folder / "classes.json", list(collection.classes))
    return len(rows)


def class_mapping(
    source_classes: list[str], wanted: tuple[str, ...], key: str = "data.classes"
) -> tuple[list[str], dict]:
    """The kept class list and {source label: kept label}; names not in the source are a
    ParamsError naming `key`. An empty `wanted` keeps every class."""
    if not wanted:
        return list(source_classes), {i: i for i in range(len(source_classes))}
    unknown = [name for name in wanted if name not in source_classes]
    if unknown:
        raise ParamsError(
            f"{key} = {list(wanted)}: {', '.join(map(repr, unknown))} not in the source's "
            f"classes ({', '.join(source_classes) or 'none: the source is unlabelled'})"
        )
    return list(wanted), {source_classes.index(name): i for i, name in enumerate(wanted)}


def read_manifest(path: str | Path) -> pd.DataFrame:
    """A manifest.csv with its text columns as strings ("" for empty), never NaN."""
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("id", "label", "offset", "size"):
        if column in manifest:
            manifest[column] = manifest[column].astype(np.int64)
    return manifest


# ---------------------------------------------------------------------------------------------
# Choosing a source


def collect(params: DataParams, scratch: str | Path) -> Collection:
    """The items of `params.source`; `scratch` is a folder inside the output for downloads.

    A source that yields no item at all (an empty folder or archive) raises SourceError once
    its items have been read: a pipeline of zero images is a mistake, never a result.
    """
    collection = _source_collection(params, Path(scratch))
    return Collection(collection.classes, _not_empty(collection.items, params.source))


def _source_collection(params: DataParams, scratch: Path) -> Collection:
    source = params.source
    if source in IDX_SETS:
        return idx_collection(source, download=params.download)
    if source == "shapes":
        return shapes_collection(params.shapes_per_class)
    kind, _, rest = source.partition(":")
    if kind == "folder":
        return folder_collection(_existing(rest, "folder"))
    if kind == "archive":
        return archive_collection(_existing(rest, "archive"))
    match = _URL_SOURCE.match(source)
    return url_collection(match["url"], match["sha256"].lower(), scratch)


def _not_empty(items: Iterable[RawItem], source: str) -> Iterator[RawItem]:
    """`items`, then SourceError if there were none."""
    count = 0
    for item in items:
        count += 1
        yield item
    if count == 0:
        raise SourceError(f"data.source = {source!r} holds no items (an empty folder or archive?)")


def _existing(path: str, kind: str) -> Path:
    resolved = Path(path).expanduser()
    exists = resolved.is_dir() if kind == "folder" else resolved.is_file()
    if not exists:
        raise SourceError(f"data.source: no {kind} at {resolved}")
    return resolved


# ---------------------------------------------------------------------------------------------
# IDX: MNIST and Fashion-MNIST


def idx_folders(name: str) -> list[Path]:
    """Where the IDX files of `name` are looked up, in order."""
    folders = []
    if os.environ.get("AIGC_DATA_DIR"):
        folders.append(Path(os.environ["AIGC_DATA_DIR"]) / name)
    folders.append(SYSTEM_DATASETS / name)
    folders.append(Path.home() / ".cache" / "aigc" / name)
    return folders


def idx_collection(name: str, download: bool) -> Collection:
    """The official train and test items of IDX set `name`, labelled, with their split."""
    idx_set = IDX_SETS[name]
    contents = {key: read_idx_file(name, key, download) for key in idx_set.files}

    def items() -> Iterator[RawItem]:
        for split in ("train", "test"):
            images = parse_idx(contents[f"{split}-images"], magic=2051)  # (N, 28, 28) uint8
            labels = parse_idx(contents[f"{split}-labels"], magic=2049)  # (N,) uint8
            if len(images) != len(labels) or images.shape[1:] != (IDX_SIDE, IDX_SIDE):
                raise SourceError(f"{name} {split}: {images.shape} images, {len(labels)} labels")
            file_name = idx_set.files[f"{split}-images"].name
            for index in range(len(images)):
                yield RawItem(
                    origin=f"{file_name}#{index}", data=images[index].tobytes(),
                    label=int(labels[index]), split=split, format="idx",
                )  # fmt: skip

    return Collection(list(idx_set.classes), items())


def read_idx_file(name: str, key: str, download: bool) -> bytes:
    """The decompressed content of one IDX file, verified by sha256; downloads if allowed."""
    idx_file = IDX_SETS[name].files[key]
    mismatched = []
    for folder in idx_folders(name):
        path = folder / idx_file.name
        if path.is_file():
            content = _verified_content(path.read_bytes(), idx_file)
            if content is not None:
                return content
            mismatched.append(str(path))
    if download:
        return _download_idx(name, idx_file)
    looked = ", ".join(str(folder) for folder in idx_folders(name))
    problem = f"{', '.join(mismatched)} failed the sha256 check" if mismatched else "not found"
    raise SourceError(
        f"{name}: {idx_file.name} {problem} (looked in {looked}). Get the files with "
        f"`sudo apt-get install dataset-{name}`, put them in $AIGC_DATA_DIR/{name}/, or set "
        "`data.download: true` to fetch them from the official address"
    )


def _verified_content(data: bytes, idx_file: IdxFile) -> bytes | None:
    """The decompressed bytes when `data` is the official file or a re-gzipped copy; else None."""
    if hashlib.sha256(data).hexdigest() != idx_file.gz_sha256:
        try:
            content = gzip.decompress(data)
        except (OSError, EOFError):
            return None
        return content if hashlib.sha256(content).hexdigest() == idx_file.content_sha256 else None
    return gzip.decompress(data)


def _download_idx(name: str, idx_file: IdxFile) -> bytes:
    """Fetch one official file, check it, store it atomically in the data folder."""
    target_folder = idx_folders(name)[0 if os.environ.get("AIGC_DATA_DIR") else -1]
    failures = []
    for base in IDX_SETS[name].urls:
        url = base + idx_file.name
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except OSError as error:
            failures.append(f"{url}: {error}")
            continue
        if hashlib.sha256(data).hexdigest() != idx_file.gz_sha256:
            failures.append(f"{url}: sha256 mismatch")
            continue
        with atomic_open(target_folder / idx_file.name, "wb") as handle:
            handle.write(data)
        return gzip.decompress(data)
    raise SourceError(f"{name}: could not download {idx_file.name}: {'; '.join(failures)}")


def parse_idx(content: bytes, magic: int) -> np.ndarray:
    """An IDX array (http://yann.lecun.com/exdb/mnist/: big-endian magic, dims, then uint8 data)."""
    found = int.from_bytes(content[:4], "big")
    if found != magic:
        raise SourceError(f"IDX magic number {found}, expected {magic}")
    dims = [int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(magic & 0xFF)]
    start = 4 + 4 * len(dims)
    return np.frombuffer(content, dtype=np.uint8, offset=start).reshape(dims)


# ---------------------------------------------------------------------------------------------
# Folders and archives: the class is the top-level subfolder


def labels_from_paths(paths: list[PurePosixPath]) -> tuple[list[str], list[int]]:
    """Classes = the top-level subfolders; files at the top of a labelled tree get -1."""
    classes = sorted({path.parts[0] for path in paths if len(path.parts) > 1})
    index = {name: i for i, name in enumerate(classes)}
    labels = [index[path.parts[0]] if len(path.parts) > 1 else -1 for path in paths]
    return classes, labels


def folder_collection(root: Path) -> Collection:
    """Every file under `root`, in sorted order, labelled by its top-level subfolder."""
    root = root.resolve()
    entries = []  # (path relative to root, absolute path)
    for folder, directories, files in os.walk(root, followlinks=False):
        directories.sort()
        for name in sorted(files) + [d for d in directories if os.path.islink(Path(folder, d))]:
            absolute = Path(folder, name)
            entries.append((PurePosixPath(absolute.relative_to(root).as_posix()), absolute))
    entries.sort(key=lambda entry: entry[0].parts)
    classes, labels = labels_from_paths([relative for relative, _ in entries])

    def items() -> Iterator[RawItem]:
        for (relative, absolute), label in zip(entries, labels, strict=True):
            item = _read_folder_entry(root, absolute)
            item.origin, item.label = str(relative), label
            yield item

    return Collection(classes, items())


def _read_folder_entry(root: Path, path: Path) -> RawItem:
    """The bytes of one file, or a RawItem saying why it was not read."""
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(root):
            return _failed("symlink", f"symlink to {os.readlink(path)} points outside the folder")
        if not target.exists():
            return _failed("symlink", f"dangling symlink to {os.readlink(path)}")
        if target.is_dir():
            return _failed("symlink", "directory symlink inside the folder: not followed")
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            return _failed("special_file", "not a regular file (a FIFO, socket or device)")
        if status.st_size > MAX_ITEM_BYTES:
            detail = f"file of {status.st_size:,} bytes, over {MAX_ITEM_BYTES:,}"
            return _failed("too_large", detail)
        return RawItem(origin="", data=path.read_bytes())
    except OSError as error:
        return _failed("unreadable", f"{type(error).__name__}: {error.strerror or error}")


def _failed(reason: str, detail: str) -> RawItem:
    return RawItem(origin="", error=reason, detail=detail)


def unsafe_member_name(name: str) -> str:
    """Why an archive member name could escape the output folder ("" when it is safe)."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "path with a '..' component"
    if "\x00" in name:
        return "NUL byte in the name"
    return ""


@dataclass
class _Member:
    name: str
    entry: zipfile.ZipInfo | tarfile.TarInfo
    error: str = ""
    detail: str = ""
    size: int = 0


def archive_collection(path: Path, origin_prefix: str = "") -> Collection:
    """The members of a zip or tar archive, read in archive order, never extracted to disk."""
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = _zip_members(archive)

        def read(member: _Member) -> bytes:
            return archive.read(member.entry)

    elif tarfile.is_tarfile(path):
        archive = tarfile.open(path, "r:*")
        members = _tar_members(archive)

        def read(member: _Member) -> bytes:
            return archive.extractfile(member.entry).read()

    else:
        raise SourceError(f"{origin_prefix or path}: neither a zip nor a tar archive")
    for member in members:
        if not member.error and member.size > MAX_ITEM_BYTES:
            member.error = "too_large"
            member.detail = f"member of {member.size:,} bytes, over {MAX_ITEM_BYTES:,}"
    relative = _strip_common_folder(
        [PurePosixPath(m.name.replace("\\", "/")) for m in members if not m.error]
    )
    classes, labels = labels_from_paths(relative)

    def items() -> Iterator[RawItem]:
        label_of = iter(labels)
        try:
            for member in members:
                origin = f"{origin_prefix}{member.name}"
                if member.error:
                    yield RawItem(origin=origin, error=member.error, detail=member.detail)
                    continue
                label = next(label_of)
                try:
                    data = read(member)
                except Exception as error:  # a corrupt member: recorded, the rest still read
                    detail = f"{type(error).__name__}: {error}"
                    yield RawItem(origin=origin, label=label, error="unreadable", detail=detail)
                    continue
                yield RawItem(origin=origin, data=data, label=label)
        finally:
            archive.close()

    return Collection(classes, items())


def _strip_common_folder(paths: list[PurePosixPath]) -> list[PurePosixPath]:
    """Drop leading folders that every path shares (`dataset/cat/a.png` -> `cat/a.png`)."""
    while paths and all(len(p.parts) > 1 for p in paths) and len({p.parts[0] for p in paths}) == 1:
        paths = [PurePosixPath(*p.parts[1:]) for p in paths]
    return paths


def _zip_members(archive: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in archive.infolist():
        if info.is_dir():
            continue
        member = _Member(info.filename, info, size=info.file_size)
        mode = info.external_attr >> 16
        if reason := unsafe_member_name(info.filename):
            member.error, member.detail = "unsafe_path", f"{reason}: not extracted"
        elif stat.S_ISLNK(mode):
            member.error, member.detail = "symlink", "symlink entry: not extracted"
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no Unix mode recorded
            member.error, member.detail = "special_file", "not a regular file: not extracted"
        elif info.flag_bits & 0x1:
            member.error, member.detail = "unreadable", "encrypted entry"
        members.append(member)
    return members


def _tar_members(archive: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in archive:
        if info.isdir():
            continue
        member = _Member(info.name, info, size=info.size)
        if reason := unsafe_member_name(info.name):
            member.error, member.detail = "unsafe_path", f"{reason}: not extracted"
        elif info.issym():
            member.error, member.detail = "symlink", f"symlink to {info.linkname}: not extracted"
        elif info.islnk():
            member.error, member.detail = "hardlink", f"hard link to {info.linkname}: not extracted"
        elif not info.isreg():
            member.error, member.detail = "special_file", "device or FIFO entry: not extracted"
        members.append(member)
    return members


# ---------------------------------------------------------------------------------------------
# URL: download, verify, then an archive or a single image


def url_collection(url: str, sha256: str, scratch: Path) -> Collection:
    """Download `url` into `scratch`, check its sha256, read it as an archive or one image."""
    scratch.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=scratch, prefix=".download.")
    os.close(handle)
    temporary = Path(temporary)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(temporary, "wb") as out:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise SourceError(f"data.source: could not download {url}: {error}") from None
    if digest.hexdigest() != sha256:
        temporary.unlink(missing_ok=True)
        raise SourceError(f"data.source: {url} has sha256 {digest.hexdigest()}, expected {sha256}")
    if zipfile.is_zipfile(temporary) or tarfile.is_tarfile(temporary):
        collection = archive_collection(temporary, origin_prefix=f"{url}!")
        return Collection(collection.classes, _then_delete(collection.items, temporary))
    data = temporary.read_bytes()
    temporary.unlink()
    return Collection([], [RawItem(origin=url, data=data)])


def _then_delete(items: Iterable[RawItem], path: Path) -> Iterator[RawItem]:
    try:
        yield from items
    finally:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Shapes: procedural, labelled, seeded


def shapes_collection(per_class: int, seed: int = SHAPES_SEED) -> Collection:
    """`per_class` PNG images of each shape in SHAPES, class-interleaved, deterministic."""

    def items() -> Iterator[RawItem]:
        generator = np.random.default_rng(seed)
        for index in range(per_class * len(SHAPES)):
            label = index % len(SHAPES)
            image = draw_shape(SHAPES[label], generator)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            yield RawItem(origin=f"shapes#{index}", data=buffer.getvalue(), label=label)

    return Collection(list(SHAPES), items())


def draw_shape(shape: str, generator: np.random.Generator, side: int = SHAPES_SIDE) -> Image.Image:
    """One grey `shape` at a random centre, size, angle and pair of grey levels."""
    supersample = 4  # drawn 4x larger then downsampled: antialiased edges
    big = side * supersample
    background = int(generator.integers(0, 64))
    foreground = int(generator.integers(background + 96, 256))
    radius = generator.uniform(0.18, 0.4) * big
    centre = generator.uniform(radius + 0.05 * big, big - radius - 0.05 * big, size=2)
    angle = generator.uniform(0, 2 * np.pi)
    image = Image.new("L", (big, big), background)
    draw = ImageDraw.Draw(image)
    x, y = centre
    width = max(2, int(radius * 0.35))

    def polygon(corners: int, start: float) -> list[tuple[float, float]]:
        turns = start + np.arange(corners) * 2 * np.pi / corners
        return [(x + radius * np.cos(t), y + radius * np.sin(t)) for t in turns]

    box = [x - radius, y - radius, x + radius, y + radius]
    if shape == "circle":
        draw.ellipse(box, fill=foreground)
    elif shape == "ring":
        draw.ellipse(box, outline=foreground, width=width)
    elif shape == "square":
        draw.polygon(polygon(4, angle), fill=foreground)
    elif shape == "frame":
        draw.polygon(polygon(4, angle), outline=foreground, width=width)
    elif shape == "triangle":
        draw.polygon(polygon(3, angle), fill=foreground)
    elif shape == "diamond":
        # a rhombus: two opposite corners pulled in
        corners = polygon(4, angle)
        corners[1] = (x + 0.5 * (corners[1][0] - x), y + 0.5 * (corners[1][1] - y))
        corners[3] = (x + 0.5 * (corners[3][0] - x), y + 0.5 * (corners[3][1] - y))
        draw.polygon(corners, fill=foreground)
    elif shape == "cross":
        for t in (angle, angle + np.pi / 2):
            dx, dy = radius * np.cos(t), radius * np.sin(t)
            draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=foreground, width=width)
    elif shape == "bar":
        dx, dy = radius * np.cos(angle), radius * np.sin(angle)
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=foreground, width=width)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return image.resize((side, side), Image.Resampling.LANCZOS)
