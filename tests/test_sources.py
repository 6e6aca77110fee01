"""Collect: every source kind (IDX with its checksums and download, folder, archive, URL, shapes).

Each test builds its own tiny input in a temp folder; nothing touches the network (downloads
are served from file:// URLs).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import tarfile

import numpy as np
import pytest
import yaml
from conftest import tiny_params
from PIL import Image

from aigc import sources
from aigc.sources import SHAPES, IdxFile, IdxSet, read_manifest
from stages.collect import main as collect_main


def write_params(folder, data_overrides: dict):
    params = tiny_params({"data": data_overrides})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def collect(tmp_path, **data) -> tuple:
    """Run the collect stage; return (manifest, classes, items.bin bytes)."""
    out = tmp_path / "raw"
    collect_main(["--out", str(out), "--params", str(write_params(tmp_path, data))])
    classes = json.loads((out / "classes.json").read_text())
    return read_manifest(out / "manifest.csv"), classes, (out / "items.bin").read_bytes()


def png_bytes(value: int = 0, size: int = 8) -> bytes:
    pixels = (np.arange(size * size).reshape(size, size) * 3 + value).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_shapes_are_labelled_seeded_and_packed(tmp_path):
    manifest, classes, blob = collect(tmp_path, source="shapes", shapes_per_class=3)
    assert classes == list(SHAPES)
    assert len(manifest) == 3 * len(SHAPES)
    assert sorted(manifest.label.value_counts().tolist()) == [3] * len(SHAPES)
    assert (manifest["class"] == [SHAPES[label] for label in manifest.label]).all()
    for row in manifest.itertuples():
        data = blob[row.offset : row.offset + row.size]
        assert hashlib.sha256(data).hexdigest() == row.sha256
        assert Image.open(io.BytesIO(data)).size == (32, 32)
    again, _, blob_again = collect(tmp_path / "again", source="shapes", shapes_per_class=3)
    assert blob_again == blob and (again.sha256 == manifest.sha256).all()


# ---------------------------------------------------------------------------------------------
# IDX sets: lookup order, checksum of the .gz or of the content, download only when allowed


def idx_bytes(magic: int, array: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def tiny_idx(tmp_path, monkeypatch):
    """A 5-train / 3-test IDX set standing in for Fashion-MNIST, with its own checksums."""
    generator = np.random.default_rng(0)
    arrays = {
        "train-images": (2051, generator.integers(0, 256, (5, 28, 28))),
        "train-labels": (2049, np.array([0, 1, 2, 3, 9])),
        "test-images": (2051, generator.integers(0, 256, (3, 28, 28))),
        "test-labels": (2049, np.array([4, 5, 6])),
    }
    real = sources.IDX_SETS["fashion-mnist"]
    files, gz = {}, {}
    for key, (magic, array) in arrays.items():
        content = idx_bytes(magic, array)
        gz[key] = gzip.compress(content, mtime=0)
        files[key] = IdxFile(
            real.files[key].name,
            hashlib.sha256(gz[key]).hexdigest(),
            hashlib.sha256(content).hexdigest(),
        )
    server = tmp_path / "server"
    server.mkdir()
    for key, data in gz.items():
        (server / files[key].name).write_bytes(data)
    fake = IdxSet(real.classes, (server.as_uri() + "/",), files)
    monkeypatch.setitem(sources.IDX_SETS, "fashion-mnist", fake)
    monkeypatch.setattr(sources, "SYSTEM_DATASETS", tmp_path / "no-system-datasets")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "datasets"))
    return {"gz": gz, "files": files, "arrays": arrays, "server": server}


def test_idx_files_found_in_the_data_dir_keep_the_official_split(tmp_path, tiny_idx):
    folder = tmp_path / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    for key, data in tiny_idx["gz"].items():
        # re-gzipped (as Debian ships them): other .gz bytes, same content
        content = gzip.decompress(data)
        (folder / tiny_idx["files"][key].name).write_bytes(gzip.compress(content, mtime=12345))
    manifest, classes, blob = collect(tmp_path, source="fashion-mnist")
    assert classes[0] == "T-shirt/top" and classes[9] == "Ankle boot" and len(classes) == 10
    assert manifest.split.tolist() == ["train"] * 5 + ["test"] * 3
    assert manifest.label.tolist() == [0, 1, 2, 3, 9, 4, 5, 6]
    assert (manifest.format == "idx").all() and (manifest["size"] == 784).all()
    first_test = np.frombuffer(blob, np.uint8)[5 * 784 : 6 * 784].reshape(28, 28)
    assert (first_test == tiny_idx["arrays"]["test-images"][1][0]).all()


def test_missing_idx_files_stop_with_instructions(tmp_path, tiny_idx, capsys):
    with pytest.raises(SystemExit) as stopped:
        collect(tmp_path, source="fashion-mnist", download=False)
    assert stopped.value.code == 1
    message = capsys.readouterr().err
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "data.download: true" in message


def test_a_corrupt_idx_file_is_refused(tmp_path, tiny_idx, capsys):
    folder = tmp_path / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    for key, data in tiny_idx["gz"].items():
        (folder / tiny_idx["files"][key].name).write_bytes(data)
    name = tiny_idx["files"]["train-images"].name
    (folder / name).write_bytes(gzip.compress(b"not the real file"))
    with pytest.raises(SystemExit):
        collect(tmp_path, source="fashion-mnist")
    assert "failed the sha256 check" in capsys.readouterr().err


def test_download_is_checked_and_stored_atomically(tmp_path, tiny_idx, capsys):
    manifest, _, _ = collect(tmp_path, source="fashion-mnist", download=True)
    assert len(manifest) == 8
    stored = tmp_path / "datasets" / "fashion-mnist"
    assert sorted(p.name for p in stored.iterdir()) == sorted(
        f.name for f in tiny_idx["files"].values()
    )  # no temporary files left behind
    # a server that serves other bytes: refused, nothing stored
    for path in stored.iterdir():
        path.unlink()
    name = tiny_idx["files"]["test-labels"].name
    (tiny_idx["server"] / name).write_bytes(gzip.compress(b"tampered"))
    with pytest.raises(SystemExit):
        collect(tmp_path / "second", source="fashion-mnist", download=True)
    assert "sha256 mismatch" in capsys.readouterr().err
    assert not (stored / name).exists()
    assert not [p for p in stored.iterdir() if p.name.startswith(".")]


def test_the_official_checksums_are_constants():
    for name in ("fashion-mnist", "mnist"):
        files = sources.IDX_SETS[name].files
        assert set(files) == {"train-images", "train-labels", "test-images", "test-labels"}
        for idx_file in files.values():
            assert len(idx_file.gz_sha256) == 64 and len(idx_file.content_sha256) == 64
    assert sources.IDX_SETS["fashion-mnist"].files["train-images"].gz_sha256.startswith("3aede38d")


@pytest.mark.skipif(
    not (sources.SYSTEM_DATASETS / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_the_debian_copy_passes_the_content_checksum():
    content = sources.read_idx_file("fashion-mnist", "test-labels", download=False)
    labels = sources.parse_idx(content, magic=2049)
    assert labels.shape == (10000,) and np.bincount(labels).tolist() == [1000] * 10


# ---------------------------------------------------------------------------------------------
# Folders, archives, URLs


def test_a_folder_is_labelled_by_its_subfolders(tmp_path):
    root = tmp_path / "pictures"
    (root / "cats" / "nested").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / "cats" / "a.png").write_bytes(png_bytes(1))
    (root / "cats" / "nested" / "b.png").write_bytes(png_bytes(2))
    (root / "dogs" / "c.png").write_bytes(png_bytes(3))
    (root / "stray.png").write_bytes(png_bytes(4))
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes(5))
    (root / "dogs" / "link.png").symlink_to(outside)
    (root / "dogs" / "inside.png").symlink_to(root / "cats" / "a.png")
    (root / "dogs" / "dangling.png").symlink_to(tmp_path / "missing.png")
    os.mkfifo(root / "dogs" / "pipe.png")
    manifest, classes, _ = collect(tmp_path, source=f"folder:{root}")
    assert classes == ["cats", "dogs"]
    by_origin = {row.origin: row for row in manifest.itertuples()}
    assert by_origin["cats/nested/b.png"].label == 0 and by_origin["dogs/c.png"].label == 1
    assert by_origin["stray.png"].label == -1
    assert by_origin["dogs/inside.png"].error == ""  # inside the tree: followed
    assert by_origin["dogs/link.png"].error == "symlink"
    assert "outside" in by_origin["dogs/link.png"].detail
    assert by_origin["dogs/link.png"].size == 0  # never read
    assert by_origin["dogs/dangling.png"].error == "symlink"
    assert by_origin["dogs/pipe.png"].error == "special_file"


def test_a_flat_folder_is_unlabelled(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for index in range(3):
        (root / f"{index}.png").write_bytes(png_bytes(index))
    manifest, classes, _ = collect(tmp_path, source=f"folder:{root}")
    assert classes == [] and (manifest.label == -1).all() and len(manifest) == 3


def test_an_archive_is_read_without_extracting_and_its_wrapper_folder_ignored(tmp_path):
    path = tmp_path / "set.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, value in [("set/red/a.png", 1), ("set/blue/b.png", 2), ("set/blue/c.png", 3)]:
            data = png_bytes(value)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    manifest, classes, blob = collect(tmp_path / "work", source=f"archive:{path}")
    assert classes == ["blue", "red"]
    assert manifest.label.tolist() == [1, 0, 0]
    row = manifest.iloc[1]
    assert blob[row.offset : row.offset + row["size"]] == png_bytes(2)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "work" not in p.parts)
    assert after == before


def test_a_url_is_verified_then_read(tmp_path, capsys):
    image = tmp_path / "one.png"
    image.write_bytes(png_bytes(7))
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    manifest, classes, blob = collect(
        tmp_path / "ok", source=f"url:{image.as_uri()}#sha256={digest}"
    )
    assert classes == [] and len(manifest) == 1 and blob == png_bytes(7)
    assert not [p for p in (tmp_path / "ok" / "raw").iterdir() if p.name.startswith(".download")]
    wrong = "0" * 64
    with pytest.raises(SystemExit):
        collect(tmp_path / "bad", source=f"url:{image.as_uri()}#sha256={wrong}")
    assert "expected 0000" in capsys.readouterr().err


@pytest.mark.parametrize(
    "source", ["imagenet", "url:http://example.com/a.zip", "url:x#sha256=12", "folder:"]
)
def test_a_bad_source_is_a_params_error(tmp_path, capsys, source):
    with pytest.raises(SystemExit) as stopped:
        collect(tmp_path, source=source)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "data.source" in error


def test_data_params_reject_a_repeated_class():
    with pytest.raises(sources.ParamsError, match="data.classes"):
        dataclasses.replace(
            sources.DataParams("shapes", False, 16, 1, "pad", ("ring",), 4), classes=("a", "a")
        )


def test_a_tar_member_repeated_under_one_name_keeps_each_version(tmp_path):
    path = tmp_path / "twice.tar"
    with tarfile.open(path, "w") as archive:
        for value in (1, 2):
            data = png_bytes(value)
            info = tarfile.TarInfo("a.png")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    manifest, _, blob = collect(tmp_path, source=f"archive:{path}")
    stored = [blob[row.offset : row.offset + row.size] for row in manifest.itertuples()]
    assert stored == [png_bytes(1), png_bytes(2)]
