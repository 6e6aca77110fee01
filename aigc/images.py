"""Images as arrays: grids and PNG writing, then decoding, validation and normalisation.

Between stages images are uint8 arrays shaped (N, C, H, W) with C = 1 or 3; models work with
float tensors in [0, 1] of the same shape.
"""

from __future__ import annotations

import io
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from aigc.errors import Rejected
from aigc.files import atomic_path

GRID_SIZE = 64  # images in a model's sample grid (8 x 8): its first GRID_SIZE samples


def to_uint8(images) -> np.ndarray:
    """Float images in [0, 1] (array or tensor, (N, C, H, W)) as uint8, rounded and clipped."""
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def make_grid(
    images: np.ndarray, columns: int = 8, padding: int = 2, fill: int = 255
) -> np.ndarray:
    """Tile uint8 images (N, C, H, W) into one (C, rows*H', columns*W') image."""
    images = to_uint8(images)
    count, channels, height, width = images.shape
    rows = max(1, -(-count // columns))
    cell_h, cell_w = height + padding, width + padding
    grid = np.full(
        (channels, rows * cell_h + padding, columns * cell_w + padding), fill, dtype=np.uint8
    )
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = padding + row * cell_h, padding + column * cell_w
        grid[:, top : top + height, left : left + width] = images[index]
    return grid


def save_png(path: str | Path, image: np.ndarray, scale: int = 1) -> None:
    """Write one uint8 image (C, H, W) as a PNG, atomically; `scale` enlarges it (nearest)."""
    image = to_uint8(image)
    array = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    picture = Image.fromarray(np.ascontiguousarray(array))
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
        )
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")


def save_grid(path: str | Path, images: np.ndarray, columns: int = 8, scale: int = 2) -> None:
    """Tile `images` (N, C, H, W) and write the grid as a PNG."""
    save_png(path, make_grid(images, columns), scale=scale)


# ---------------------------------------------------------------------------------------------
# Decoding, validation and normalisation (the clean stage)
#
# An item's bytes become a uint8 (C, size, size) array in four steps: `decode` (header checked
# before any pixel is decoded), `ImageOps.exif_transpose`, `to_channels` (every Pillow mode to L
# or RGB) and `fit_square` (antialiased resize, then pad or crop). Anything wrong raises
# `Rejected(reason, detail)`.


def decode(data: bytes, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Decode encoded image bytes, refusing images above `max_pixels` before decoding them.

    `draft_size` lets JPEG decode at a reduced scale that still covers that size (much faster
    for large photos that are resized down anyway).
    """
    if len(data) == 0:
        raise Rejected("empty", "zero-byte file")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None  # open reads only the header: check its size here
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise Rejected("too_large", _too_large(width, height, max_pixels))
            Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's checks while decoding: a second line
            if draft_size and image.format == "JPEG":
                image.draft(image.mode, (draft_size, draft_size))
            image.load()
    except Rejected:
        raise
    except Image.DecompressionBombError as error:
        raise Rejected("too_large", str(error)) from None
    except UnidentifiedImageError:
        claimed = signature_format(data)
        if claimed is None:
            raise Rejected("not_an_image", f"no image format recognised in {len(data):,} bytes, "
                           f"starting {data[:8]!r}") from None  # fmt: skip
        detail = f"{claimed} signature, but Pillow cannot read the header"
        raise Rejected(damage(data, claimed, ""), detail) from None
    except Exception as error:  # hostile bytes reach many code paths in Pillow's decoders
        text = f"{type(error).__name__}: {error}"
        claimed = signature_format(data) or "?"
        raise Rejected(damage(data, claimed, text), f"{claimed} {text}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    if width * height == 0:
        raise Rejected("corrupt", f"image of size {width}x{height}")
    return image


def _too_large(width: int, height: int, max_pixels: int) -> str:
    return f"{width}x{height} = {width * height:,} pixels, over clean.max_pixels = {max_pixels:,}"


def signature_format(data: bytes) -> str | None:
    """The Pillow format whose signature (magic bytes) `data` starts with, else None.

    Asks each of Pillow's format plugins whether it accepts the first 16 bytes, as
    `Image.open` does, without parsing anything further: a file can claim a format and still be
    broken after its signature.
    """
    Image.init()
    prefix = data[:16]
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        if accept is None:  # formats without a signature (TGA, ...): nothing to go by
            continue
        try:
            if accept(prefix):
                return name
        except Exception:  # a plugin's check can trip on a short prefix
            continue
    return None


def damage(data: bytes, claimed: str, error_text: str) -> str:
    """Why bytes that claim an image format do not decode: "truncated" or "corrupt".

    A PNG is judged by its chunks (`png_damage`); any other format by what Pillow said.
    """
    if claimed == "PNG":
        return png_damage(data)
    return "truncated" if "truncated" in error_text.lower() else "corrupt"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_damage(data: bytes) -> str:
    """Why a PNG does not decode: "truncated" when its bytes end before IEND, else "corrupt".

    Walks the chunks (length, four-letter type, data, CRC-32): a first chunk that is not a
    13-byte IHDR, a type that is not four letters, an impossible length or a CRC mismatch is
    corrupt; a chunk that runs past the end of the bytes is truncated. A PNG whose chunks are
    all intact but which still does not decode (a broken zlib stream inside IDAT) is corrupt.
    """
    position, first = len(PNG_SIGNATURE), True
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if not kind.isalpha() or length >= 2**31 or (first and (kind, length) != (b"IHDR", 13)):
            return "corrupt"
        end = position + 12 + length
        if end > len(data):
            return "truncated"
        if zlib.crc32(data[position + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return "corrupt"
        if kind == b"IEND":
            return "corrupt"
        position, first = end, False
    return "truncated"


def decode_idx(data: bytes, side: int = 28) -> Image.Image:
    """Raw IDX pixels (side x side uint8, row-major) as a greyscale image."""
    if len(data) != side * side:
        raise Rejected("corrupt", f"{len(data)} bytes of IDX pixels, expected {side * side}")
    return Image.frombytes("L", (side, side), data)


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag, so the pixels are the right way up."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block: keep the stored orientation
        return image


def to_channels(image: Image.Image, channels: int, background: int = 255) -> Image.Image:
    """Any Pillow mode as L (`channels` 1, ITU-R 601 luma) or RGB (3).

    Transparency (RGBA, LA, PA, P or L/RGB with a tRNS colour) is composited onto a flat grey
    `background` (255 = white, as a page shows it). 16-bit modes are scaled to 8 bits (v * 255 /
    65535, rounded), never clipped; 32-bit I and F are scaled from their range (see `_scale_wide`).
    """
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = Image.fromarray(_scale_wide(np.asarray(image), mode), "L")
    elif mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (background, background, background, 255))
        image = Image.alpha_composite(flat, rgba).convert("RGB")
    target = "L" if channels == 1 else "RGB"
    if image.mode != target:
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, P, 1: through RGB
        image = image.convert(target)
    return image


def _scale_wide(pixels: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit integer or float pixels as uint8.

    I;16: v * 255 / 65535. I: as 8-bit when every value is in 0..255, as 16-bit when in 0..65535,
    else stretched from its min..max. F: [0, 1] scaled by 255, [0, 255] kept, else stretched.
    """
    values = pixels.astype(np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        scale, offset = 255.0 / 65535.0, 0.0
    elif low >= 0 and high <= 1.0 and mode == "F":
        scale, offset = 255.0, 0.0
    elif low >= 0 and high <= 255:
        scale, offset = 1.0, 0.0
    elif low >= 0 and high <= 65535 and mode == "I":
        scale, offset = 255.0 / 65535.0, 0.0
    else:
        scale, offset = 255.0 / max(high - low, 1e-12), low
    return np.clip(np.rint((values - offset) * scale), 0, 255).astype(np.uint8)


def fit_square(image: Image.Image, size: int, fit: str) -> tuple[Image.Image, tuple]:
    """`image` (L or RGB) as size x size, and the (left, top, width, height) box of its content.

    pad: keep the aspect, downscale (antialiased) only when larger than `size`, then pad centred
    with black (28 -> 32 is pure padding). crop: resize the shorter side to `size`, centre-crop.
    """
    width, height = image.size
    if fit == "pad":
        if width > size or height > size:
            scale = size / max(width, height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
            image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
        left, top = (size - width) // 2, (size - height) // 2
        if (width, height) != (size, size):
            canvas = Image.new(image.mode, (size, size), 0)
            canvas.paste(image, (left, top))
            image = canvas
        return image, (left, top, width, height)
    scale = size / min(width, height)
    width, height = max(size, round(width * scale)), max(size, round(height * scale))
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size)), (0, 0, size, size)


def pad_batch(images: np.ndarray, size: int) -> tuple[np.ndarray, tuple]:
    """uint8 (N, C, h, w) with h, w <= size centred on black (N, C, size, size), as `fit_square`
    pads one image; also returns the content box (left, top, w, h)."""
    count, channels, height, width = images.shape
    left, top = (size - width) // 2, (size - height) // 2
    padded = np.zeros((count, channels, size, size), dtype=np.uint8)
    padded[:, :, top : top + height, left : left + width] = images
    return padded, (left, top, width, height)


def box_std(images: np.ndarray, boxes: np.ndarray, block: int = 256) -> np.ndarray:
    """Pixel std inside each image's box (N, 4: left, top, w, h), the largest over channels.

    uint8 images (N, C, H, W); a flat colour has std 0 in every channel, whatever the colour.
    Works `block` images at a time to bound its float64 temporaries.
    """
    count, channels, height, width = images.shape
    spreads = np.zeros(count)
    rows, columns = np.arange(height), np.arange(width)
    for start in range(0, count, block):
        part = slice(start, start + block)
        left, top, box_width, box_height = (boxes[part, k, None] for k in range(4))
        inside_rows = (rows >= top) & (rows < top + box_height)  # (n, H)
        inside_columns = (columns >= left) & (columns < left + box_width)  # (n, W)
        mask = (inside_rows[:, :, None] & inside_columns[:, None, :])[:, None]  # (n, 1, H, W)
        values = images[part].astype(np.float64) * mask  # (n, C, H, W)
        area = (box_width * box_height).astype(np.float64)  # (n, 1)
        mean = values.sum(axis=(2, 3)) / area  # (n, C)
        variance = (values * values).sum(axis=(2, 3)) / area - mean * mean
        spreads[part] = np.sqrt(np.maximum(variance, 0.0)).max(axis=1)
    return spreads


def as_array(image: Image.Image) -> np.ndarray:
    """An L or RGB image as uint8 (C, H, W)."""
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def perceptual_hashes(images: np.ndarray, block: int = 1024) -> np.ndarray:
    """64-bit DCT perceptual hashes of uint8 images (N, C, H, W), as uint64 (N,).

    The pHash of Zauner (2010, "Implementation and Benchmarking of Perceptual Image Hash
    Functions", www.phash.org): grey, 32x32, 2-D DCT-II, the 8x8 lowest frequencies without the
    first row and column (the mean and the pure ramps), one bit per coefficient above their
    median. Robust to small changes of brightness, contrast, noise and scale. The median splits
    the 64 bits 32/32, so distances between hashes are even.
    """
    hashes = np.zeros(len(images), dtype=np.uint64)
    for start in range(0, len(images), block):
        grey = images[start : start + block].astype(np.float32)
        if grey.shape[1] == 3:
            grey = grey[:, 0] * 0.299 + grey[:, 1] * 0.587 + grey[:, 2] * 0.114  # (n, H, W)
        else:
            grey = grey[:, 0]
        if grey.shape[1:] != (32, 32):
            grey = np.stack(
                [
                    np.asarray(Image.fromarray(g).resize((32, 32), Image.Resampling.BOX))
                    for g in grey
                ]
            )
        coefficients = _DCT_ROWS @ grey @ _DCT_ROWS.T  # (n, 8, 8): frequencies 1..8 on both axes
        flat = coefficients.reshape(len(grey), 64)
        bits = flat > np.median(flat, axis=1, keepdims=True)  # (n, 64)
        packed = np.packbits(bits, axis=1, bitorder="little").view("<u8")[:, 0]
        hashes[start : start + block] = packed
    return hashes


def _dct_matrix(size: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: row k is frequency k (scipy.fft.dct(norm="ortho"))."""
    k = np.arange(size)
    matrix = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * size)) * np.sqrt(2 / size)
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT_ROWS = _dct_matrix(32)[1:9].astype(np.float32)  # (8, 32): only the frequencies the hash uses
