"""Text sources (aigc/text_sources.py): fortunes category files cut at `%` lines, the index files
skipped, files, folders and archives read by the image side's safe code, UTF-16 files cut right."""

from __future__ import annotations

import os
import zipfile

import pytest

from aigc.params import ParamsError
from aigc.sources import SourceError
from aigc.text_sources import check_text_source, fortunes_collection, text_collection

ART = b"A picture is worth\na thousand words.\n%\nArt is long, life is short.\n%\n"
SCIENCE = b"E = mc^2\n%\n\n%\nIn theory, theory and practice agree.\n"


@pytest.fixture
def fortunes(tmp_path):
    root = tmp_path / "fortunes"
    root.mkdir()
    (root / "art").write_bytes(ART)
    (root / "science").write_bytes(SCIENCE)
    (root / "art.dat").write_bytes(b"\x00\x00\x00\x02 an index")  # strfile's index: skipped
    (root / "art.u8").write_bytes(b"skipped")
    (root / "off").mkdir()
    os.symlink(root / "art", root / "art-link")
    return root


def texts(collection):
    return [(item.origin, item.label, item.data, item.error) for item in collection.items]


def test_fortunes_are_cut_at_percent_lines_one_class_per_file(fortunes):
    collection = fortunes_collection(fortunes)
    assert collection.classes == ["art", "science"]
    assert texts(collection) == [
        ("art#0", 0, b"A picture is worth\na thousand words.", ""),
        ("art#1", 0, b"Art is long, life is short.", ""),
        ("science#0", 1, b"E = mc^2", ""),
        ("science#1", 1, b"In theory, theory and practice agree.", ""),
    ]


def test_a_missing_fortunes_folder_says_how_to_install_it(tmp_path):
    with pytest.raises(SourceError, match="apt-get install -y fortunes"):
        fortunes_collection(tmp_path / "nowhere")


def test_a_file_is_cut_at_percent_lines_or_else_into_lines(tmp_path):
    (tmp_path / "lines.txt").write_bytes(b"first text\n\nsecond text\r\nthird\n")
    (tmp_path / "fortune.txt").write_bytes(ART)
    lines = text_collection(f"file:{tmp_path / 'lines.txt'}")
    assert [item.data for item in lines.items] == [b"first text", b"second text", b"third"]
    assert lines.classes == []
    assert len(list(text_collection(f"file:{tmp_path / 'fortune.txt'}").items)) == 2


def test_a_utf16_file_is_cut_after_decoding(tmp_path):
    text = "Ünï one\n%\nsecond one\n"
    (tmp_path / "wide.txt").write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    items = list(text_collection(f"file:{tmp_path / 'wide.txt'}").items)
    assert [(item.data.decode(), item.format) for item in items] == [
        ("Ünï one", "utf-16-le"), ("second one", "utf-16-le")
    ]  # fmt: skip


def test_folders_and_archives_use_the_safe_readers_and_keep_errors_as_items(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "jokes").mkdir(parents=True)
    (folder / "quotes").mkdir()
    (folder / "jokes" / "one.txt").write_bytes(b"a joke")
    (folder / "quotes" / "two.txt").write_bytes(ART)
    os.symlink("/etc/passwd", folder / "quotes" / "escape.txt")
    collection = text_collection(f"folder:{folder}")
    found = texts(collection)
    assert collection.classes == ["jokes", "quotes"]
    assert ("jokes/one.txt#0", 0, b"a joke", "") in found
    assert [error for *_, error in found].count("symlink") == 1  # recorded, not followed
    assert sum(1 for origin, label, *_ in found if origin.startswith("quotes/two")) == 2

    archive = tmp_path / "corpus.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("jokes/one.txt", b"a joke")
        handle.writestr("quotes/two.txt", ART)
        handle.writestr("../evil.txt", b"escape")
    collection = text_collection(f"archive:{archive}")
    items = texts(collection)
    assert collection.classes == ["jokes", "quotes"]
    assert ("jokes/one.txt#0", 0, b"a joke", "") in items
    assert [error for *_, error in items].count("unsafe_path") == 1 and len(items) == 4


@pytest.mark.parametrize("source", ["fortune", "file:", "url:http://x", "shapes"])
def test_a_bad_source_names_the_key_and_what_is_allowed(source):
    with pytest.raises(ParamsError, match=r"text.source = .* allowed: fortunes, file:PATH"):
        check_text_source(source)
