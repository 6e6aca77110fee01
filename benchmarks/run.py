"""Run every benchmark and print its figures: `make bench` (or `python -m benchmarks.run data`).

Each benchmark module has a `main()` that prints a table; the figures depend on the machine and
on what else it is doing, so compare ratios taken in one run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import time

import torch

SUITES = ("data", "training", "text", "privacy", "evaluation", "textbook")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", help=f"any of {', '.join(SUITES)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}; allowed: {', '.join(SUITES)}")
    args.suites = args.suites or list(SUITES)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, CUDA {'yes' if torch.cuda.is_available() else 'no'}"
    )
    for name in args.suites:
        print(f"\n== {name}")
        started = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main()
        print(f"({name}: {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
