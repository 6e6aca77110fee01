"""What a training run reports as it goes: dvclive logs, a tqdm bar, and its timings.

- `Progress`: mean losses every `log_every` steps, a preview per epoch (a sample grid, or sample
  texts in `samples/epoch_NNN.txt`), the run's params,
  and a summary (timings) when the run ends, into a dvclive folder (`Live(dvcyaml=None,
  save_dvc_exp=False)`, so dvc.yaml stays hand-written); quiet on data-parallel processes
  other than 0.
- `Stopwatch`: training seconds added up across resumes, and images (or characters) per second
  of this run.

Timings end up in the logs (`cache: false` in dvc.yaml), never in a cached output.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from aigc.files import write_text

__all__ = ["Progress", "Stopwatch"]


class Progress:
    """dvclive and a tqdm bar: mean losses every `log_every` steps, a sample grid per epoch,
    params, and the summary (timings) when the run ends. Quiet on processes other than 0."""

    def __init__(self, family, live_dir, step, total_steps, steps_per_epoch, world) -> None:
        from dvclive import Live  # here: it is slow to import and only training needs it

        self.family, self.total_steps, self.steps_per_epoch = family, total_steps, steps_per_epoch
        self.live = None
        if world.main:
            self.live = Live(str(live_dir), dvcyaml=None, save_dvc_exp=False, resume=step > 0)
        self.bar = tqdm(total=total_steps, initial=step, desc=family, dynamic_ncols=True,
                        mininterval=1.0, disable=not world.main)  # fmt: skip
        self.running: dict[str, float] = {}  # loss sums since the last log
        self.counts: dict[str, int] = {}  # steps that reported each loss since then (a family
        # may report more losses in a later phase: vaegan once its discriminator joins)
        self.last: dict[str, float] = {}
        self.summary: dict[str, float] = {}

    def log_params(self, config, loop, common) -> None:
        if self.live is not None:
            params = {**plain(dataclasses.asdict(config)), **dataclasses.asdict(loop)}
            self.live.log_params({"family": self.family, **params, **dataclasses.asdict(common)})

    def record(self, step: int, losses: Mapping[str, float], every: int) -> None:
        """Add a step's losses; every `every` steps (and at the end) log their means."""
        self.bar.update(1)
        self.last = dict(losses)
        for name, value in losses.items():
            self.running[name] = self.running.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1
        if step % every and step != self.total_steps:
            return
        means = {name: total / self.counts[name] for name, total in self.running.items()}
        if self.live is not None:
            self.live.step = step
            for name, value in means.items():
                self.live.log_metric(f"train/{name}", value)
            self.live.log_metric("epoch", step / self.steps_per_epoch)
            self.live.make_summary()
        self.bar.set_postfix({name: f"{value:.3g}" for name, value in means.items()})
        self.running, self.counts = {}, {}

    def preview(self, step: int, make_preview: Callable[[], np.ndarray | str]) -> None:
        """Log the epoch's preview (made only on process 0): a grid image, or sample texts
        (written beside dvclive's files and shown on the console); and a line of its losses."""
        if self.live is None:
            return
        epoch = math.ceil(step / self.steps_per_epoch)
        shown = make_preview()
        if isinstance(shown, str):
            write_text(Path(self.live.dir) / "samples" / f"epoch_{epoch:03d}.txt", shown)
            self.bar.write(shown)
        else:
            self.live.log_image(f"samples/epoch_{epoch:03d}.png", shown)
        total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        losses = ", ".join(f"{name} {value:.3g}" for name, value in self.last.items())
        self.bar.write(
            f"{self.family}: epoch {epoch}/{total_epochs}, step {step}/{self.total_steps}: {losses}"
        )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.close()
        if self.live is not None:
            self.live.summary.update(self.summary)
            self.live.end()


class Stopwatch:
    """Training seconds across resumes (`seconds`), and this run's rates (`rates`)."""

    def __init__(self, seconds_before: float) -> None:
        self.before = seconds_before
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.started

    def rates(self, done: int, unit: str = "images") -> dict[str, float]:
        """train_seconds and `<unit>_per_second` of this run (`done` units since it started)."""
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 and done else 0.0
        return {"train_seconds": self.seconds(), f"{unit}_per_second": rate}


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Config values as dvclive params accept them (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
