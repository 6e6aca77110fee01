"""Where texts come from: the items of `text.source`, one raw item per text.

`text.source` names one of:

    fortunes             Debian's `fortunes` package (/usr/share/games/fortunes/): one class per
                         category file, entries separated by lines holding `%`; the `.dat` index
                         and `.u8` files, links and folders are skipped
    file:PATH            one file: `%`-separated entries when it has `%` lines, else one text
                         per non-empty line; unlabelled
    folder:PATH          a class per subfolder, each file a text (or `%`-separated texts)
    archive:PATH         a zip or tar of such a folder, extracted safely
    url:URL#sha256=HEX   an archive or a file at a URL, checked against the hash

Folders, archives and URLs are read by the image side's own code (aigc/sources.py: symlinks,
special files, unsafe member names and oversized files become items with their error, never
crashes); this module only cuts files into texts (`entries`). Bytes stay bytes: decoding and
every check is the cleaner's (aigc/text_cleaning.py). A file with a UTF-16 byte-order mark is
cut after decoding, and each text re-encoded as UTF-8 with the mark's codec in `format`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aigc.params import ParamsError, spec
from aigc.sources import (
    Collection,
    RawItem,
    SourceError,
    archive_collection,
    folder_collection,
    url_collection,
)

FORTUNES = Path("/usr/share/games/fortunes")
SKIPPED_SUFFIXES = (".dat", ".u8")
_SEPARATOR = re.compile(rb"^%[ \t]*\r?$", re.MULTILINE)
_URL_SOURCE = re.compile(r"^url:(?P<url>\S+)#sha256=(?P<sha256>[0-9a-fA-F]{64})$")
UTF16_BOMS = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}


@dataclass(frozen=True)
class TextParams:
    """params.yaml `text`: what the text branch learns from (collect-text, clean-text)."""

    source: str = spec(doc="fortunes | file:PATH | folder:PATH | archive:PATH | url:URL#sha256=HEX")
    classes: tuple[str, ...] = spec(doc="class (category) names kept; [] keeps all")

    def __post_init__(self) -> None:
        check_text_source(self.source)
        if len(set(self.classes)) != len(self.classes):
            raise ParamsError(f"text.classes = {list(self.classes)} names a class twice")


def check_text_source(source: str) -> None:
    """Raise ParamsError naming `text.source` when it has none of the allowed forms."""
    kind, _, rest = source.partition(":")
    if source == "fortunes" or (kind in ("file", "folder", "archive") and rest):
        return
    if kind == "url" and _URL_SOURCE.match(source):
        return
    raise ParamsError(
        f"text.source = {source!r} is not allowed; allowed: fortunes, file:PATH, folder:PATH, "
        "archive:PATH, url:URL#sha256=HEX"
    )


def text_collection(source: str, fortunes: Path = FORTUNES, scratch: Path | None = None):
    """The texts of `source` as a Collection of raw items (one per text)."""
    check_text_source(source)
    kind, _, rest = source.partition(":")
    if source == "fortunes":
        return fortunes_collection(fortunes)
    if kind == "file":
        path = Path(rest).expanduser()
        if not path.is_file():
            raise SourceError(f"text.source: no file at {path}")
        item = RawItem(origin=path.name, data=path.read_bytes())
        return Collection([], entries(item, lines_without_separators=True))
    if kind == "folder":
        path = Path(rest).expanduser()
        if not path.is_dir():
            raise SourceError(f"text.source: no folder at {path}")
        files = folder_collection(path)
    elif kind == "archive":
        path = Path(rest).expanduser()
        if not path.is_file():
            raise SourceError(f"text.source: no archive at {path}")
        files = archive_collection(path)
    else:
        match = _URL_SOURCE.match(source)
        files = url_collection(match["url"], match["sha256"].lower(), scratch or Path("."))
    return Collection(files.classes, (text for item in files.items for text in entries(item)))


def fortunes_collection(root: Path = FORTUNES) -> Collection:
    """Every entry of every category file under `root`, labelled by its file's name."""
    if not root.is_dir():
        raise SourceError(
            f"text.source = 'fortunes': no folder {root} (install it: apt-get install -y "
            "fortunes), or set text.source to file:, folder:, archive: or url:"
        )
    files = sorted(path for path in root.iterdir() if path.is_file() and not path.is_symlink()
                   and path.suffix not in SKIPPED_SUFFIXES)  # fmt: skip
    classes = [path.name for path in files]

    def items() -> Iterator[RawItem]:
        for label, path in enumerate(files):
            yield from entries(RawItem(origin=path.name, data=path.read_bytes(), label=label))

    return Collection(classes, items())


def entries(item: RawItem, lines_without_separators: bool = False) -> Iterator[RawItem]:
    """The texts of one file: its `%`-separated entries, else its non-empty lines (when
    `lines_without_separators`) or the whole file. An item with an error passes through."""
    if item.error:
        yield item
        return
    data, codec = item.data, "text"
    for bom, name in UTF16_BOMS.items():
        if data.startswith(bom):
            try:
                data, codec = data[len(bom) :].decode(name).encode("utf-8"), name
            except UnicodeDecodeError:
                yield item  # the cleaner rejects it with the exact position
                return
    if _SEPARATOR.search(data):
        parts = _SEPARATOR.split(data)
    elif lines_without_separators:
        parts = data.splitlines()
    else:
        parts = [data]
    index = 0
    for part in parts:
        if not part.strip(b" \t\r\n") and (len(parts) > 1):
            continue  # the blank run between two `%` lines, or an empty line
        yield RawItem(origin=f"{item.origin}#{index}", data=part.strip(b"\r\n"),
                      label=item.label, split=item.split, format=codec)  # fmt: skip
        index += 1
