"""Data-stage benchmark: wall time and peak memory of collect, clean, split, augment.

1. The four stages on full Fashion-MNIST (70,000 items; augment with copies = 1), each run as
   its own process in a temp folder, as `dvc repro` runs them. Target on a 2-core CPU: under
   60 s in all, under 2 GB peak RSS per stage.
   Then the near-duplicate count for each `clean.near_duplicate_distance` on the clean set.
2. collect + clean over folders of synthetic 64x64 RGB PNGs of two sizes (default 5,000 and
   20,000), with 64x64 RGB output: clean's peak memory should not grow with the item count,
   because it decodes `clean.chunk_size` items at a time into a memory-mapped array.

    python -m benchmarks.data [--images 20000] [--skip-fashion]   (or: make bench)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from aigc.cleaning import near_duplicates
from aigc.images import perceptual_hashes

REPO = Path(__file__).resolve().parents[1]
FASHION_STAGES = [
    ("collect", ["--out", "data/raw"]),
    ("clean", ["--raw", "data/raw", "--out", "data/clean", "--metrics", "metrics/data.json"]),
    ("split", ["--clean", "data/clean", "--out", "data/split"]),
    ("augment", ["--train", "data/split/train", "--out", "data/train",
                 "--preview", "reports/augment_preview.png"]),
]  # fmt: skip


def run_stage(stage: str, arguments: list[str], folder: Path) -> tuple[float, float, str]:
    """Run `python -m stages.STAGE` in `folder`: (seconds, peak RSS in MiB, its output)."""
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", f"stages.{stage}", *arguments, "--params", "params.yaml"],
        cwd=folder, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{output}")
    return seconds, usage.ru_maxrss / 1024, output.strip()


def write_params(folder: Path, data: dict, clean: dict | None = None) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(data)
    params["clean"].update(clean or {})
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def bench_fashion_mnist() -> None:
    print("Fashion-MNIST, 70,000 items, image_size 32, augment copies = 1")
    print(f"{'stage':<10}{'seconds':>9}{'peak RSS MiB':>14}")
    with tempfile.TemporaryDirectory(prefix="aigc-bench-") as folder:
        folder = Path(folder)
        write_params(folder, {"source": "fashion-mnist"})
        total, peak = 0.0, 0.0
        for stage, arguments in FASHION_STAGES:
            seconds, rss, output = run_stage(stage, arguments, folder)
            total, peak = total + seconds, max(peak, rss)
            print(f"{stage:<10}{seconds:>9.1f}{rss:>14.0f}   {output.splitlines()[-1]}")
            if stage == "augment":
                rate = re.search(r"\((\d+) images/s\)", output)
                print(f"{'':<10}augment: {rate.group(1) if rate else '?'} images/s")
        print(f"{'total':<10}{total:>9.1f}{peak:>14.0f}   (target: < 60 s, < 2048 MiB)")
        near_duplicate_table(np.load(folder / "data/clean/images.npy"))


def near_duplicate_table(images: np.ndarray, distances=(0, 2, 4, 6)) -> None:
    """How many items each `clean.near_duplicate_distance` would reject (the default's basis).

    pHash bits split 32/32, so distances are even: an odd threshold rejects what the even one
    below it does.
    """
    hashes = np.concatenate(
        [perceptual_hashes(images[start : start + 4096]) for start in range(0, len(images), 4096)]
    )
    print(f"\nnear-duplicates in the {len(images)} clean items, by pHash distance threshold")
    print(f"{'distance':>8}{'rejected':>10}{'share':>8}{'search s':>10}")
    for distance in distances:
        started = time.perf_counter()
        rejected = len(near_duplicates(hashes, distance))
        seconds = time.perf_counter() - started
        print(f"{distance:>8}{rejected:>10}{rejected / len(images):>8.1%}{seconds:>10.1f}")


def synthetic_folder(folder: Path, count: int, side: int = 64) -> None:
    """`count` distinct RGB PNGs in 10 class subfolders: smooth colour blobs plus noise."""
    generator = np.random.default_rng(0)
    for index in range(count):
        coarse = generator.integers(0, 256, (4, 4, 3)).astype(np.float32)
        image = np.repeat(np.repeat(coarse, side // 4, axis=0), side // 4, axis=1)
        image = np.clip(image + generator.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        target = folder / f"class{index % 10}" / f"{index:06d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target, compress_level=1)


def bench_bounded_memory(counts: list[int]) -> None:
    print("\ncollect + clean of synthetic 64x64 RGB PNG folders (output 64x64 RGB, chunk 4096)")
    print(f"{'items':>8}{'collect s':>11}{'clean s':>9}{'clean MiB':>11}{'images.npy MiB':>16}")
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="aigc-bench-") as folder:
            folder = Path(folder)
            synthetic_folder(folder / "pictures", count)
            write_params(
                folder,
                {"source": f"folder:{folder / 'pictures'}", "image_size": 64, "channels": 3},
                {"near_duplicate_distance": 2},
            )
            collect_seconds, _, _ = run_stage("collect", FASHION_STAGES[0][1], folder)
            clean_seconds, rss, _ = run_stage("clean", FASHION_STAGES[1][1], folder)
            size = (folder / "data/clean/images.npy").stat().st_size / 2**20
            print(
                f"{count:>8}{collect_seconds:>11.1f}{clean_seconds:>9.1f}{rss:>11.0f}{size:>16.0f}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="largest synthetic folder")
    parser.add_argument("--skip-fashion", action="store_true", help="only the folder benchmark")
    args = parser.parse_args(argv if argv is not None else [])
    if not args.skip_fashion:
        bench_fashion_mnist()
    bench_bounded_memory(sorted({max(1, args.images // 4), args.images}))


if __name__ == "__main__":
    main(sys.argv[1:])
