"""Clean: hostile files and archives, conversions, deduplication, labels, chunking.

The hostile-folder test builds every kind of bad input the pipeline promises to survive, runs
collect and clean as stages, and checks each item's fate (kept and correctly converted, or
rejected with the right reason) and that nothing was written outside the output folder.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import merge, random_images, tiny_params
from PIL import Image

from aigc.cleaning import close_pairs, near_duplicates
from aigc.images import box_std, perceptual_hashes, png_damage, signature_format
from aigc.sources import Collection, RawItem, write_raw
from stages.clean import main as clean_main
from stages.collect import main as collect_main


def encode(pixels: np.ndarray, format: str = "PNG", mode: str | None = None, **options) -> bytes:
    buffer = io.BytesIO()
    image = (
        Image.frombytes(mode, pixels.shape[1::-1], pixels.tobytes())
        if mode
        else Image.fromarray(pixels)
    )
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def rgb(seed: int, height: int = 24, width: int = 24) -> np.ndarray:
    """A structured RGB image (H, W, 3): smooth blobs, distinct per seed."""
    return random_images(1, 3, max(height, width), seed)[0].transpose(1, 2, 0)[:height, :width]


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (a decompression bomb), built from a 1x1 PNG."""
    data = bytearray(encode(np.zeros((1, 1), np.uint8)))
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), width, height, ...
    struct.pack_into(">II", data, ihdr + 8, width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 8 + 13]))
    struct.pack_into(">I", data, ihdr + 8 + 13, crc)
    return bytes(data)


def build_hostile_folder(root: Path, outside: Path) -> None:
    root.mkdir(parents=True)
    good = rgb(1)
    (root / "01_good.png").write_bytes(encode(good))
    (root / "02_copy.png").write_bytes(encode(good))  # the same bytes
    (root / "03_same.bmp").write_bytes(encode(good, "BMP"))  # other bytes, same pixels
    (root / "04_near.png").write_bytes(
        encode(np.clip(good.astype(int) + 3, 0, 255).astype(np.uint8))
    )
    (root / "05_truncated.png").write_bytes(encode(rgb(2, 64, 64))[:600])
    (root / "06_zero.png").write_bytes(b"")
    (root / "07_notes.jpg").write_text("hello, I am a text file with a picture's name\n")
    (root / ".jpg").write_text("a hidden text file named .jpg\n")
    cmyk = np.zeros((24, 24, 4), np.uint8)
    cmyk[:, :12] = (0, 255, 255, 0)  # red
    cmyk[:, 12:] = (255, 255, 0, 0)  # blue
    (root / "08_cmyk.jpg").write_bytes(encode(cmyk, "JPEG", mode="CMYK", quality=95))
    deep = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # 16-bit, 0..65535
    (root / "09_deep.png").write_bytes(encode(deep))
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0, 0, 128, 0] + [0] * 762)
    palette.paste(1, (6, 6, 14, 14))
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=0)
    (root / "10_palette.png").write_bytes(buffer.getvalue())
    sideways = np.full((20, 40), 60, np.uint8)  # stored 40 wide x 20 tall, left half white
    sideways[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    (root / "11_rotated.jpg").write_bytes(encode(sideways, "JPEG", quality=95, exif=exif.tobytes()))
    (root / "12_bomb.png").write_bytes(huge_png_header(30000, 30000))
    (root / "13_blank.png").write_bytes(encode(np.full((24, 24, 3), 128, np.uint8)))
    (root / "14_big.png").write_bytes(encode(rgb(3, 48, 64)))
    (root / "15_outside.png").symlink_to(outside)


def build_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ok.png", encode(rgb(4)))
        archive.writestr("../../escape.png", encode(rgb(5)))
        archive.writestr("/abs/evil.png", encode(rgb(6)))
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")


def build_tar(path: Path) -> None:
    with tarfile.open(path, "w:gz") as archive:

        def add(
            name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
        ) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data)
            archive.addfile(info, io.BytesIO(data) if data else None)

        add("ok.png", encode(rgb(7)))
        add("../../escape.png", encode(rgb(8)))
        add("/abs.png", encode(rgb(9)))
        add("link.png", kind=tarfile.SYMTYPE, link="/etc/passwd")
        add("hard.png", kind=tarfile.LNKTYPE, link="ok.png")
        add("device", kind=tarfile.CHRTYPE)
        add("fifo", kind=tarfile.FIFOTYPE)


def run_stages(work: Path, source: str, overrides: dict | None = None, chunk_size: int = 4096):
    """collect + clean in `work`: (images, labels, manifest, rejected by origin, metrics)."""
    work.mkdir(parents=True, exist_ok=True)
    settings = {
        "data": {"source": source, "image_size": 32, "channels": 3, "fit": "pad"},
        "clean": {"near_duplicate_distance": 2, "max_pixels": 10_000_000, "chunk_size": chunk_size},
    }
    params = tiny_params(merge(settings, overrides or {}))
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    common = ["--params", str(work / "params.yaml")]
    collect_main(["--out", str(work / "raw"), *common])
    clean_main(
        [
            "--raw",
            str(work / "raw"),
            "--out",
            str(work / "clean"),
            "--metrics",
            str(work / "metrics" / "data.json"),
            *common,
        ]  # fmt: skip
    )
    clean = work / "clean"
    rejected = pd.read_csv(clean / "rejected.csv", keep_default_na=False)
    return (
        np.load(clean / "images.npy"),
        np.load(clean / "labels.npy"),
        pd.read_csv(clean / "manifest.csv", keep_default_na=False),
        {row.origin: (row.reason, row.detail) for row in rejected.itertuples()},
        json.loads((work / "metrics" / "data.json").read_text()),
    )


def tree(folder: Path) -> dict[str, int]:
    """Every path under `folder` (symlinks not followed) with its size."""
    return {str(p.relative_to(folder)): p.lstat().st_size for p in folder.rglob("*")}


def test_hostile_folder_and_archives(tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(encode(rgb(99)))
    build_hostile_folder(tmp_path / "hostile", outside)
    build_zip(tmp_path / "evil.zip")
    build_tar(tmp_path / "evil.tar.gz")
    before = tree(tmp_path)

    # the folder -------------------------------------------------------------------------------
    images, labels, kept, rejected, metrics = run_stages(
        tmp_path / "work" / "folder", f"folder:{tmp_path / 'hostile'}"
    )
    reasons = {origin: reason for origin, (reason, _) in rejected.items()}
    assert reasons == {
        "02_copy.png": "duplicate",
        "03_same.bmp": "duplicate",
        "04_near.png": "near_duplicate",
        "05_truncated.png": "truncated",
        "06_zero.png": "empty",
        "07_notes.jpg": "not_an_image",
        ".jpg": "not_an_image",
        "12_bomb.png": "too_large",
        "13_blank.png": "blank",
        "15_outside.png": "symlink",
    }
    assert (
        "same bytes as item" in rejected["02_copy.png"][1]
        and "01_good.png" in rejected["02_copy.png"][1]
    )
    assert "same pixels" in rejected["03_same.bmp"][1]
    assert "01_good.png" in rejected["04_near.png"][1]
    assert "900,000,000 pixels" in rejected["12_bomb.png"][1]
    assert kept.origin.tolist() == [
        "01_good.png", "08_cmyk.jpg", "09_deep.png", "10_palette.png", "11_rotated.jpg",
        "14_big.png",
    ]  # fmt: skip
    assert images.shape == (6, 3, 32, 32) and images.dtype == np.uint8
    assert (labels == -1).all()
    assert metrics["collected"] == 16 == metrics["kept"] + metrics["rejected"]
    assert metrics["rejected_by_reason"]["duplicate"] == 2
    assert metrics["images_per_class"] == {"unlabelled": 6}
    good, cmyk, deep, palette, rotated, big = images

    assert (good[:, 4:28, 4:28] == rgb(1).transpose(2, 0, 1)).all()  # 24x24 padded to 32
    assert good[:, :4].max() == 0 and good[:, 28:].max() == 0
    assert np.abs(cmyk[:, 16, 8].astype(int) - [255, 0, 0]).max() < 40  # CMYK red -> RGB red
    assert np.abs(cmyk[:, 16, 23].astype(int) - [0, 0, 255]).max() < 40
    expected = np.arange(256).reshape(16, 16)  # 16-bit k * 257 scales to exactly k
    assert all((deep[c, 8:24, 8:24] == expected).all() for c in range(3))
    # 20x20 at offset 6; the opaque green square covers 6..14 of it, the rest is transparent
    assert (palette[:, 7, 7] == 255).all()  # transparent: composited on white
    assert palette[:, 16, 16].tolist() == [0, 128, 0]
    assert (palette[:, 0, 0] == 0).all()  # padding is black
    # upright after EXIF: 20 wide x 40 tall -> 16 x 32, padded left and right
    assert rotated[:, :, :8].max() == 0 and rotated[:, :, 24:].max() == 0
    assert (
        rotated[0, 2:14, 10:22].min() > 200 and np.abs(rotated[0, 18:30, 10:22] - 60.0).max() < 20
    )
    # 64 x 48 -> 32 x 24, padded above and below
    assert big[:, :4].max() == 0 and big[:, 28:].max() == 0 and big[:, 4:28].std() > 10

    # the archives -----------------------------------------------------------------------------
    _, _, kept, rejected, metrics = run_stages(
        tmp_path / "work" / "zip", f"archive:{tmp_path / 'evil.zip'}"
    )
    assert kept.origin.tolist() == ["ok.png"]
    assert {o: r for o, (r, _) in rejected.items()} == {
        "../../escape.png": "unsafe_path",
        "/abs/evil.png": "unsafe_path",
        "link.png": "symlink",
    }
    assert metrics["collected"] == 4 == metrics["kept"] + metrics["rejected"]

    _, _, kept, rejected, metrics = run_stages(
        tmp_path / "work" / "tar", f"archive:{tmp_path / 'evil.tar.gz'}"
    )
    assert kept.origin.tolist() == ["ok.png"]
    assert {o: r for o, (r, _) in rejected.items()} == {
        "../../escape.png": "unsafe_path",
        "/abs.png": "unsafe_path",
        "link.png": "symlink",
        "hard.png": "hardlink",
        "device": "special_file",
        "fifo": "special_file",
    }
    assert metrics["collected"] == 7 == metrics["kept"] + metrics["rejected"]

    # nothing outside the output folders changed, nothing escaped ------------------------------
    after = tree(tmp_path)
    changed = {p for p in after if after[p] != before.get(p)} | (before.keys() - after.keys())
    assert all(p == "work" or p.startswith("work/") for p in changed), changed
    assert not list(tmp_path.parent.rglob("escape.png"))
    assert not Path("/abs.png").exists() and not Path("/abs/evil.png").exists()


def broken_pngs() -> dict[str, bytes]:
    """PNGs broken after a valid signature, by name; each name ends in the reason expected."""
    png = encode(rgb(20, 64, 64))
    idat = png.index(b"IDAT")  # the type; the chunk's data follows it
    idat_length = int.from_bytes(png[idat - 4 : idat], "big")
    flipped = bytearray(png)
    flipped[idat + 4 + idat_length // 2] ^= 0xFF  # one byte of the compressed pixels
    return {
        "signature_then_garbage.corrupt": png[:8] + b"this is not a chunk at all" * 8,
        "cut_in_idat.truncated": png[: idat + 4 + idat_length // 2],
        "cut_before_idat.truncated": png[: idat - 2],
        "signature_only.truncated": png[:8],
        "flipped_idat_byte.corrupt": bytes(flipped),
    }


def test_a_broken_file_with_an_image_signature_is_corrupt_or_truncated_not_a_non_image(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "00_good.png").write_bytes(encode(rgb(21)))
    (root / "01_no_iend.png").write_bytes(encode(rgb(23))[:-12])  # every pixel there: readable
    for name, data in broken_pngs().items():
        (root / f"{name}.png").write_bytes(data)
    (root / "gif_signature_then_garbage.corrupt.gif").write_bytes(b"GIF89a" + b"x" * 40)
    (root / "text.not_an_image.png").write_text("a text file named .png\n")
    _, _, kept, rejected, metrics = run_stages(tmp_path / "work", f"folder:{root}")
    assert kept.origin.tolist() == ["00_good.png", "01_no_iend.png"]
    expected = {name: name.split(".")[1] for name in os.listdir(root) if name[0] != "0"}
    assert {origin: reason for origin, (reason, _) in rejected.items()} == expected
    for name in expected.keys() - {"text.not_an_image.png"}:  # the detail names the format
        assert rejected[name][1].startswith("GIF" if name.startswith("gif") else "PNG"), name
    assert metrics["rejected_by_reason"]["corrupt"] == 3
    assert metrics["rejected_by_reason"]["truncated"] == 3


def test_png_damage_reads_the_chunks():
    png = encode(rgb(22))
    assert png_damage(png[:8]) == "truncated"
    assert png_damage(png[:-1]) == "truncated"  # IEND's CRC cut short
    assert png_damage(png) == "corrupt"  # every chunk intact: the damage is inside one
    bad_crc = bytearray(png)
    bad_crc[29] ^= 1  # IHDR's CRC (8 signature + 4 length + 4 type + 13 data)
    assert png_damage(bytes(bad_crc)) == "corrupt"
    assert png_damage(png[:8] + png[33:]) == "corrupt"  # the first chunk is not IHDR
    assert signature_format(png[:8]) == "PNG" and signature_format(b"plain text") is None


def test_chunk_size_does_not_change_the_result(tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(encode(rgb(99)))
    build_hostile_folder(tmp_path / "hostile", outside)
    source = f"folder:{tmp_path / 'hostile'}"
    one = run_stages(tmp_path / "small", source, chunk_size=2)
    other = run_stages(tmp_path / "large", source, chunk_size=1000)
    assert (one[0] == other[0]).all()
    assert one[3] == other[3]


def test_labels_classes_filter_and_bad_labels(tmp_path, capsys):
    root = tmp_path / "animals"
    for name, seed in [("cat", 1), ("dog", 2), ("eel", 3)]:
        (root / name).mkdir(parents=True)
        (root / name / "a.png").write_bytes(encode(rgb(seed)))
        (root / name / "b.png").write_bytes(encode(rgb(seed + 10)))
    (root / "stray.png").write_bytes(encode(rgb(30)))
    overrides = {"data": {"classes": ["eel", "cat"], "channels": 1}}
    images, labels, kept, rejected, metrics = run_stages(
        tmp_path / "work", f"folder:{root}", overrides
    )
    assert json.loads((tmp_path / "work" / "clean" / "classes.json").read_text()) == ["eel", "cat"]
    assert dict(zip(kept.origin, labels, strict=True)) == {
        "cat/a.png": 1, "cat/b.png": 1, "eel/a.png": 0, "eel/b.png": 0,
    }  # fmt: skip
    assert (kept["class"] == ["cat", "cat", "eel", "eel"]).all()
    assert {o: r for o, (r, _) in rejected.items()} == {
        "dog/a.png": "bad_label", "dog/b.png": "bad_label", "stray.png": "bad_label",
    }  # fmt: skip
    assert images.shape == (4, 1, 32, 32)
    assert metrics["images_per_class"] == {"eel": 2, "cat": 2}

    with pytest.raises(SystemExit) as stopped:
        run_stages(tmp_path / "again", f"folder:{root}", {"data": {"classes": ["cow"]}})
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "data.classes" in error and "'cow'" in error


def test_class_names_that_look_like_numbers_stay_strings(tmp_path):
    root = tmp_path / "digits"
    for digit in ("0", "1"):
        (root / digit).mkdir(parents=True)
        (root / digit / "x.png").write_bytes(encode(rgb(int(digit) + 40)))
    _, labels, kept, _, metrics = run_stages(tmp_path / "work", f"folder:{root}")
    assert json.loads((tmp_path / "work" / "clean" / "classes.json").read_text()) == ["0", "1"]
    assert metrics["images_per_class"] == {"0": 1, "1": 1} and labels.tolist() == [0, 1]


def test_idx_items_are_padded_like_the_generic_path(tmp_path):
    pixels = random_images(5, 1, 28, seed=3)[:, 0]  # (5, 28, 28)
    items = [RawItem(f"x#{i}", pixels[i].tobytes(), label=i % 2, format="idx") for i in range(5)]
    write_raw(tmp_path / "raw", Collection(["a", "b"], items))
    for size, channels in [(32, 1), (36, 3), (16, 1)]:
        params = tiny_params({"data": {"image_size": size, "channels": channels}})
        params_path = tmp_path / f"params{size}.yaml"
        params_path.write_text(yaml.safe_dump(params))
        out = tmp_path / f"clean{size}"
        clean_main(
            [
                "--raw",
                str(tmp_path / "raw"),
                "--out",
                str(out),
                "--metrics",
                str(tmp_path / "m.json"),
                "--params",
                str(params_path),
            ]  # fmt: skip
        )
        images = np.load(out / "images.npy")
        assert images.shape == (5, channels, size, size)
        if size >= 28:
            pad = (size - 28) // 2
            expected = np.zeros((5, channels, size, size), np.uint8)
            expected[:, :, pad : pad + 28, pad : pad + 28] = pixels[:, None]
            assert (images == expected).all()
        else:  # downscaled through Pillow: the same picture, smaller
            small = np.asarray(Image.fromarray(pixels[0]).resize((16, 16), Image.LANCZOS))
            assert np.abs(images[0, 0].astype(int) - small).max() <= 1


# ---------------------------------------------------------------------------------------------
# Perceptual hashes and the near-duplicate search


def brute_force_near_duplicates(hashes: np.ndarray, max_distance: int) -> dict:
    """The O(N^2) reference: each item against every earlier kept item."""
    rejected = {}
    for j in range(len(hashes)):
        for i in range(j):
            distance = bin(int(hashes[i]) ^ int(hashes[j])).count("1")
            if i not in rejected and distance <= max_distance:
                rejected[j] = (i, distance)
                break
    return rejected


@pytest.mark.parametrize("max_distance", [0, 2, 5])
def test_near_duplicate_search_matches_brute_force(max_distance):
    generator = np.random.default_rng(max_distance)
    base = generator.integers(0, 2**63, size=150, dtype=np.int64).astype(np.uint64)
    # plant chains of near copies: flip a few random bits of earlier hashes
    hashes = [int(h) for h in base]
    for _ in range(150):
        source = hashes[int(generator.integers(len(hashes)))]
        for bit in generator.choice(64, size=int(generator.integers(0, 7)), replace=False):
            source ^= 1 << int(bit)
        hashes.append(source)
    hashes = np.array(hashes, dtype=np.uint64)
    found = near_duplicates(hashes, max_distance)
    assert found == brute_force_near_duplicates(hashes, max_distance)
    assert len(found) > 10
    assert near_duplicates(hashes, -1) == {}
    pairs, distances = close_pairs(hashes, max_distance)
    assert (pairs[:, 0] < pairs[:, 1]).all() and (distances <= max_distance).all()


def test_perceptual_hash_survives_small_changes_and_separates_images():
    images = random_images(8, 1, 32, seed=5)  # (8, 1, 32, 32)
    brighter = np.clip(images.astype(int) + 6, 0, 255).astype(np.uint8)
    noisy = np.clip(images + np.random.default_rng(0).normal(0, 2, images.shape), 0, 255)
    hashes = perceptual_hashes(np.concatenate([images, brighter, noisy.astype(np.uint8)]))
    original, bright, noise = hashes[:8], hashes[8:16], hashes[16:]
    assert np.bitwise_count(original ^ bright).max() <= 2
    assert np.bitwise_count(original ^ noise).max() <= 6
    between = [int(np.bitwise_count(original[i] ^ original[j])) for i in range(8) for j in range(i)]
    assert min(between) >= 12
    rgb_hash = perceptual_hashes(np.repeat(images, 3, axis=1))
    assert (rgb_hash == original).all()  # grey as RGB: the same luma, the same hash


def test_box_std_ignores_padding_and_takes_the_most_varied_channel():
    images = np.zeros((2, 3, 8, 8), np.uint8)
    images[0, :, 2:6, 2:6] = 200  # flat content, black padding around it
    images[1, 0, 2:6, 2:6] = np.arange(16).reshape(4, 4) * 10  # red varies, green/blue flat
    spread = box_std(images, np.array([[2, 2, 4, 4], [2, 2, 4, 4]]))
    assert spread[0] == 0.0
    assert spread[1] == pytest.approx(np.std(np.arange(16) * 10.0))
