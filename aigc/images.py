"""Images as arrays: grids and PNG writing (decoding and validation are added below them).

Between stages images are uint8 arrays shaped (N, C, H, W) with C = 1 or 3; models work with
float tensors in [0, 1] of the same shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from aigc.files import atomic_path


def to_uint8(images) -> np.ndarray:
    """Float images in [0, 1] (array or tensor, (N, C, H, W)) as uint8, rounded and clipped."""
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, columns: int = 8, padding: int = 2, fill: int = 255) -> np.ndarray:
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
