"""The one training loop every model family plugs into (flat, top to bottom, nanoGPT style).

    train(family, config, loop, common, data, out=..., live_dir=..., resume_dir=...)

builds `MODELS[family](config)` with the seed set, then repeats `model.train_step(batch,
labels)` over batches drawn from a per-epoch permutation (seeded by (seed, epoch), so a resumed
run skips exactly the batches already done) until `loop.steps` steps or `loop.epochs` epochs are
done. `data` is the family's modality: an image set (aigc/imagesets.py; batches of float images
in [0, 1]) or a token set (aigc/text_sets.py; batches of int64 token rows), which offer the loop
the same members. Around that one call it keeps:

- device and precision: `auto` is CUDA with bf16 autocast and channels_last (the whole training
  array on the GPU when it fits), else CPU in fp32 with `nullcontext()` and deterministic ops;
- an EMA of `model.sampling_network` when `ema_decay > 0` (warm-up min(decay, (1+t)/(10+t)));
- dvclive: losses every `log_every` steps, the model's `preview` from fixed noise each epoch (a
  sample grid, or sample texts), params, and a summary with train_seconds and images/s (or
  characters/s); a tqdm bar with the current losses;
- resume checkpoints every `checkpoint_every` steps in `resume_dir` (a git-ignored folder keyed
  by `resume_key`); on start it resumes from one and says so. SIGTERM/SIGINT end the current
  step, save a checkpoint and raise `TrainingStopped`; after a SIGKILL the next run resumes from
  the last periodic checkpoint. On CPU a resumed run ends with the same weights as one that was
  never stopped (the torch RNG state travels in the checkpoint);
- a NaN or Inf loss raises `TrainingError` naming the loss and step; nothing is written to `out`;
- DP-SGD when `config.privacy` asks for it (aigc/privacy.py): Poisson batches of original
  images, the family's private networks wrapped for per-sample clipping and noise, and the
  epsilon spent in the summary and the checkpoint's meta (one process only);
- data parallel under `torchrun --nproc_per_node N -m stages.train ...` (aigc/distributed.py,
  which states exactly what it preserves): every process takes 1/N of each batch, gradients
  are averaged, `sync_batch_norm` normalises over the global batch. Only rank 0 logs and
  writes files; a NaN or a stop signal on any rank stops every rank at the same step.

On success the final checkpoint goes to `out` (aigc.checkpoint; no timings inside, so identical
runs give identical files) and `resume_dir` is removed. The pieces: `Run` (model, EMA, step and
its checkpoints), `start_run` (fresh or resumed), `Batches`, `check_finite`; logging and
timings are in aigc/progress.py, data parallel in aigc/distributed.py.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aigc.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aigc.devices import memory_format, precision_context, resolve_device
from aigc.distributed import any_rank, convert_sync_batch_norm, join_world, leave_world, synchronise
from aigc.imagesets import ImageSet
from aigc.models import MODELS, build_model
from aigc.models.base import GenerativeModel
from aigc.params import ParamsError, from_dict, read_params, spec
from aigc.privacy import PrivateTraining
from aigc.progress import Progress, Stopwatch
from aigc.text_sets import TokenSet

__all__ = [
    "CommonParams",
    "LoopParams",
    "LOOP_KEYS",
    "TrainingError",
    "TrainingStopped",
    "read_train_params",
    "resume_key",
    "train",
    "update_ema",
]

POISSON_STREAM = 7  # the Poisson batches' seed is (seed, step, POISSON_STREAM)


@dataclass(frozen=True)
class CommonParams:
    """`train.common`: what every family's run shares."""

    device: str = spec(default="auto", choices=("auto", "cpu", "cuda"), doc="where to train")
    precision: str = spec(default="auto", choices=("auto", "fp32", "bf16"), doc="autocast dtype")
    compile: bool = spec(default=False, doc="torch.compile the networks (CUDA only)")
    log_every: int = spec(default=50, ge=1, doc="steps between logged losses")
    checkpoint_every: int = spec(default=200, ge=1, doc="steps between resume checkpoints")
    sync_batch_norm: bool = spec(default=False, doc="batch norm over the global batch (DDP)")
    seed: int = spec(default=0, ge=0, doc="seed of init, shuffling and noise")


@dataclass(frozen=True)
class LoopParams:
    """The loop's keys of `train.<family>` (the rest of that section is the family's Config)."""

    epochs: int = spec(default=10, ge=0, doc="passes over the training set (if steps = 0)")
    steps: int = spec(default=0, ge=0, doc="total optimisation steps (0 = use epochs)")
    batch_size: int = spec(default=128, ge=1, doc="images per step")
    ema_decay: float = spec(default=0.0, ge=0.0, lt=1.0, doc="EMA of the generator (0 = off)")


LOOP_KEYS = tuple(field.name for field in dataclasses.fields(LoopParams))


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN/Inf loss); the message says what and what to try."""


class TrainingStopped(RuntimeError):
    """SIGTERM or SIGINT stopped training after a checkpoint; `signal_number` says which."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


def read_train_params(
    params_path: str | Path, family: str, image_set: ImageSet | TokenSet
) -> tuple[CommonParams, LoopParams, Any, dict]:
    """`train.common` and `train.<family>` checked against the data (cheap: shapes only).

    Returns (common, loop, model config, the raw sections for `resume_key`). The family's
    Config gets the fields the data fixes from `image_set.config_fields()` (image_size,
    channels and num_classes; for a token set, vocabulary, max_length and num_classes).
    """
    if family not in MODELS:
        raise ParamsError(f"--model {family!r} is not a model family; allowed: {', '.join(MODELS)}")
    modality = MODELS[family].modality
    if modality != image_set.modality:
        same = ", ".join(name for name in MODELS if MODELS[name].modality == image_set.modality)
        raise ParamsError(
            f"--model {family}: a {modality} family cannot train on {image_set.modality} data; "
            f"allowed for this data: {same}"
        )
    params = read_params(params_path)
    train_section = params.get("train")
    if not isinstance(train_section, dict) or "common" not in train_section:
        raise ParamsError(f"train.common: missing section in {params_path}")
    if family not in train_section:
        raise ParamsError(f"train.{family}: missing section in {params_path}")
    common = from_dict(CommonParams, train_section["common"], "train.common")
    section = train_section[family]
    if not isinstance(section, dict):
        raise ParamsError(f"train.{family}: expected a mapping of keys, got {section!r}")
    count = len(image_set)
    fixed = image_set.config_fields()
    config_keys = [f.name for f in dataclasses.fields(MODELS[family].Config) if f.name not in fixed]
    for key in section:
        if key not in LOOP_KEYS and key not in config_keys:
            allowed = ", ".join(sorted([*LOOP_KEYS, *config_keys]))
            raise ParamsError(f"train.{family}.{key}: unknown key; allowed keys: {allowed}")
    loop_values = {k: v for k, v in section.items() if k in LOOP_KEYS}
    loop = from_dict(LoopParams, loop_values, f"train.{family}")
    rest = {k: v for k, v in section.items() if k not in LOOP_KEYS}
    config = from_dict(MODELS[family].Config, rest, f"train.{family}", fixed=fixed)
    if loop.epochs == 0 and loop.steps == 0:
        raise ParamsError(f"train.{family}: epochs and steps are both 0; set one of them")
    if loop.batch_size > count:
        raise ParamsError(
            f"train.{family}.batch_size = {loop.batch_size} is larger than the {count} "
            f"training {image_set.unit if image_set.modality == 'image' else 'texts'}"
        )
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's data-parallel processes
    if loop.batch_size % processes:
        raise ParamsError(
            f"train.{family}.batch_size = {loop.batch_size} does not split evenly over "
            f"{processes} processes; allowed: a multiple of {processes}"
        )
    share = loop.batch_size // processes
    if share % config.batch_multiple:
        raise ParamsError(
            f"train.{family}.batch_size = {loop.batch_size} gives each of {processes} processes "
            f"{share} items, which the family takes in groups of {config.batch_multiple}; "
            f"allowed: a multiple of {config.batch_multiple * processes}"
        )
    if config.conditional and not image_set.labelled:
        raise ParamsError(
            f"train.{family}.conditional = true needs every training image labelled; "
            "the data has unlabelled items"
        )
    raw = {"family": family, "common": train_section["common"], family: section}
    return common, loop, config, raw


def resume_key(raw_params: Mapping[str, Any], image_set: ImageSet | TokenSet) -> str:
    """A short hash of the family, its params, the common params and the training arrays."""
    digest = hashlib.sha256(json.dumps(raw_params, sort_keys=True, default=str).encode())
    for array in (image_set.array, image_set.labels):
        digest.update(hashlib.sha256(np.ascontiguousarray(array).data).digest())
    return f"{raw_params['family']}-{digest.hexdigest()[:16]}"


def train(
    family: str,
    config: Any,
    loop: LoopParams,
    common: CommonParams,
    image_set: ImageSet | TokenSet,
    *,
    out: str | Path,
    live_dir: str | Path,
    resume_dir: str | Path,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `family` on `image_set` (or a token set), write the final checkpoint to `out`;
    returns its meta with the run's timings (which stay out of the checkpoint: they differ
    run to run)."""
    device = resolve_device(common.device, "train.common.device")
    world = join_world(device)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    try:
        return _train(family, config, loop, common, image_set, device, world,
                      Path(out), Path(live_dir), Path(resume_dir), dict(meta or {}))  # fmt: skip
    finally:
        leave_world(world)


def _train(family, config, loop, common, image_set, device, world, out, live_dir, resume_dir, meta):
    """`train` inside its process group (see there)."""
    autocast = precision_context(device, common.precision)
    private = config.privacy.enabled
    if private and world.size > 1:
        raise ParamsError(f"train.{family}.privacy: DP-SGD runs in one process, not {world.size}")
    batches = Batches(image_set, loop.batch_size, common.seed, world, device, poisson=private)
    total_steps = loop.steps if loop.steps > 0 else loop.epochs * batches.steps_per_epoch
    resume_path = resume_dir / "last.pt"
    run = start_run(family, config, loop, common, device, world, resume_path)
    run.model.plan(total_steps)
    privacy = None
    if private:  # per-sample clipping and noise on the networks that see training images
        privacy = PrivateTraining(
            run.model, config.privacy, batches.items, loop.batch_size, total_steps, family
        )
    progress = Progress(family, live_dir, run.step, total_steps, batches.steps_per_epoch, world)
    progress.log_params(config, loop, common)
    clock = Stopwatch(run.train_seconds)
    units = 0  # images (or characters) this run has trained on, for its rate

    with stop_signals() as stop, progress:
        while run.step < total_steps:
            batch, labels = batches.get(run.step)
            with autocast:
                losses = run.model.train_step(batch, labels)
            units += batches.units(batch)
            check_finite(losses, world, run.step + 1, family, config)
            if run.ema is not None:
                decay = min(loop.ema_decay, (1 + run.step) / (10 + run.step))
                update_ema(run.ema, run.model.sampling_network, decay)
            run.step += 1
            progress.record(run.step, losses, every=common.log_every)
            if batches.epoch_ends(run.step) or run.step == total_steps:
                progress.preview(run.step, lambda: preview(run, common.seed, autocast))
            [stopping] = any_rank(world, stop.signal_number is not None)
            periodic = run.step % common.checkpoint_every == 0 and run.step < total_steps
            if (stopping or periodic) and world.main:
                run.train_seconds = clock.seconds()
                save_checkpoint(resume_path, run.payload(batches.steps_per_epoch, meta))
            if stopping:
                number = stop.signal_number or signal.SIGTERM  # another rank's signal
                raise TrainingStopped(
                    f"{signal.Signals(number).name}: stopped {family} at step "
                    f"{run.step}/{total_steps}; checkpoint saved to {resume_path}; run again "
                    "to resume",
                    number,
                )
        run.model.eval()  # what is fitted after the steps (a prior) sees the data as sampling does
        with torch.no_grad(), autocast:
            progress.summary.update(run.model.finish(batches.in_order()))
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings = clock.rates(units * world.size, batches.unit)
        progress.summary.update(timings)
        accounting = privacy.summary(total_steps) if privacy is not None else {}
        progress.summary.update(accounting)

    final_meta = {
        **meta,
        "steps": total_steps,
        "epochs": total_steps / batches.steps_per_epoch,
        "batch_size": loop.batch_size,
        "device": str(device),
        "processes": world.size,
        "precision": "bf16" if isinstance(autocast, torch.autocast) else "fp32",
        "torch": str(torch.__version__),
        **accounting,
    }
    if world.main:
        save_checkpoint(out, run.payload(batches.steps_per_epoch, final_meta, resumable=False))
        shutil.rmtree(resume_dir, ignore_errors=True)
    return {**final_meta, **timings}


# ---------------------------------------------------------------------------------------------
# The pieces the loop uses.


@dataclass
class Run:
    """What a training run carries from step to step, and what its checkpoints hold."""

    family: str
    config: Any
    model: GenerativeModel
    ema: nn.Module | None
    step: int = 0
    train_seconds: float = 0.0  # across resumes; kept in resume checkpoints only

    def payload(
        self, steps_per_epoch: int, meta: Mapping[str, Any], resumable: bool = True
    ) -> dict[str, Any]:
        """The checkpoint of this run (aigc.checkpoint format). The final one (`resumable`
        false) holds nothing that varies between two identical runs, such as timings, so a
        bit-identical re-run gives a bit-identical file and DVC re-runs nothing downstream."""
        extra = {"train_seconds": self.train_seconds} if resumable else {}
        return {
            "family": self.family,
            "config": dataclasses.asdict(self.config),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizers": {name: opt.state_dict() for name, opt in self.model.optimizers.items()},
            "step": self.step,
            "epoch": self.step // steps_per_epoch,
            "rng": rng_state(),
            "meta": {**meta, **extra},
        }


def start_run(family, config, loop, common, device, world, resume_path: Path) -> Run:
    """A fresh model (seeded), or the state of `resume_path` when it holds a usable checkpoint;
    under data parallel, every process's weights synchronised and its noise seeded apart."""
    layout = memory_format(device)
    if device.type == "cuda":  # fast kernels; CPU ops here are deterministic as they are
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def fresh() -> Run:
        torch.manual_seed(common.seed)
        model = build_model(family, config).to(device, memory_format=layout)
        ema = None
        if loop.ema_decay > 0:
            ema = copy.deepcopy(model.sampling_network).requires_grad_(False).eval()
        return Run(family, config, model, ema)

    run = fresh()
    if resume_path.exists():
        try:
            state = load_checkpoint(resume_path, map_location=device)
            restore(run.model, run.ema, state)
            run.step, run.train_seconds = state["step"], state["meta"]["train_seconds"]
        except (CheckpointError, RuntimeError, KeyError, ValueError) as error:
            print(f"warning: cannot resume from {resume_path} ({error}); starting afresh")
            run = fresh()
        else:
            print(f"resuming {family} from step {run.step} ({resume_path})", flush=True)
    run.model.train()
    if world.size > 1:
        if common.sync_batch_norm:
            convert_sync_batch_norm(run.model, device)
        synchronise(run.model, world)
        torch.manual_seed(common.seed + 1000 * world.rank + run.step)
    if common.compile and device.type == "cuda":
        for child in run.model.children():
            child.compile()
    return run


class Batches:
    """The training array (on the GPU when it fits) and the batches drawn from it: epoch e
    visits the images in `epoch_permutation(count, seed, e)`, a function of (seed, epoch) alone,
    so a resumed run draws exactly the batches an uninterrupted one would; the last partial
    batch of an epoch is dropped. Each process takes its 1/N share of every batch.

    With `poisson` (DP-SGD, aigc/privacy.py) step s instead takes each original image (the
    image set's `origins`) with probability batch_size / originals, and of each one a version
    (the original or an augmented copy) at random, from a generator seeded by (seed, s):
    batches of varying size, as the privacy accountant assumes."""

    def __init__(
        self, image_set: ImageSet, batch_size: int, seed: int, world, device, poisson: bool = False
    ) -> None:
        rows = torch.from_numpy(np.ascontiguousarray(image_set.array))  # images or token rows
        labels = torch.from_numpy(np.asarray(image_set.labels, dtype=np.int64))  # (N,)
        if device.type == "cuda" and fits_on_device(rows, device):
            rows, labels = rows.to(device), labels.to(device)
        self.rows, self.labels, self.device = rows, labels, device
        self.to_batch, self.units, self.unit = image_set.to_batch, image_set.units, image_set.unit
        self.batch_size, self.seed, self.world = batch_size, seed, world
        self.poisson = poisson
        self.items = len(rows)  # what a batch samples from: rows, or originals when poisson
        if poisson:
            _, group, counts = np.unique(
                image_set.origin_rows(), return_inverse=True, return_counts=True
            )
            self.rows_by_original = np.argsort(group, kind="stable")  # rows grouped by original
            self.first_version, self.version_counts = np.cumsum(counts) - counts, counts
            self.items = len(counts)
        self.steps_per_epoch = self.items // batch_size
        self.memory_format = memory_format(device)
        self._epoch, self._permutation = -1, None

    @property
    def sample_rate(self) -> float:
        """q: the chance that an original is in a Poisson batch."""
        return self.batch_size / self.items

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's share of batch `step` as the model takes it (float images in [0, 1],
        or token rows), and its int64 labels."""
        if self.poisson:
            batch = torch.from_numpy(self.poisson_rows(step)).to(self.rows.device)
        else:
            epoch, index = divmod(step, self.steps_per_epoch)
            if epoch != self._epoch:
                permutation = epoch_permutation(len(self.rows), self.seed, epoch)
                self._epoch, self._permutation = epoch, permutation.to(self.rows.device)
            batch = self._permutation[index * self.batch_size : (index + 1) * self.batch_size]
            batch = batch[self.world.rank :: self.world.size]
        rows = self.to_batch(self.rows[batch].to(self.device, non_blocking=True))
        labels = self.labels[batch].to(self.device, non_blocking=True)
        if rows.dim() == 4:  # images: the device's memory layout
            rows = rows.contiguous(memory_format=self.memory_format)
        return rows, labels

    def in_order(self, size: int = 1024) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The whole training set in its stored order, `size` rows at a time, as `get` gives a
        batch (every process sees all of it)."""
        for start in range(0, len(self.rows), size):
            rows = self.to_batch(self.rows[start : start + size].to(self.device))
            yield rows, self.labels[start : start + size].to(self.device)

    def poisson_rows(self, step: int) -> np.ndarray:
        """Rows of Poisson batch `step`: originals in with probability q, one version each."""
        rng = np.random.default_rng([self.seed, step, POISSON_STREAM])
        chosen = np.flatnonzero(rng.random(self.items) < self.sample_rate)
        version = (rng.random(len(chosen)) * self.version_counts[chosen]).astype(np.int64)
        return self.rows_by_original[self.first_version[chosen] + version]

    def epoch_ends(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0


def check_finite(losses: Mapping[str, float], world, step: int, family: str, config) -> None:
    """Raise `TrainingError` naming the loss that is NaN or infinite at `step`, on this process
    or another (every process votes on every loss, so all stop together, naming the same)."""
    votes = any_rank(world, *(not math.isfinite(value) for value in losses.values()))
    for (name, value), bad in zip(losses.items(), votes, strict=True):
        if bad:
            shown = value if not math.isfinite(value) else "not finite on another process"
            raise TrainingError(
                f"loss {name} is {shown} at step {step} of {family}; training stopped and no "
                f"model was written. Hint: lower train.{family}.learning_rate (now "
                f"{config.learning_rate}) or check the data"
            )


def fits_on_device(rows: torch.Tensor, device: torch.device) -> bool:
    """True when the training array takes under a quarter of the free GPU memory."""
    free, _ = torch.cuda.mem_get_info(device)
    return rows.numel() * rows.element_size() < free // 4


def epoch_permutation(count: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the training images in `epoch`: a function of (seed, epoch) alone."""
    return torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(count))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, per parameter (as DiT's update_ema); buffers
    (batch-norm statistics) are copied."""
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param.detach(), 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)


@torch.no_grad()
def preview(run: Run, seed: int, autocast) -> np.ndarray | str:
    """The model's `preview` from fixed noise (the EMA weights when kept): a grid (H, W[, C])
    or sample texts."""
    model, ema = run.model, run.ema
    model.eval()
    raw_weights = None
    if ema is not None:
        raw_weights = copy.deepcopy(model.sampling_network.state_dict())
        model.sampling_network.load_state_dict(ema.state_dict())
    with autocast:
        shown = model.preview(torch.Generator().manual_seed(seed))
    if raw_weights is not None:
        model.sampling_network.load_state_dict(raw_weights)
    model.train()
    return shown


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(model, ema: nn.Module | None, state: Mapping[str, Any]) -> None:
    """Put a resume checkpoint's weights, optimizer states and RNG states back."""
    model.load_state_dict(state["model"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    for name, optimizer in model.optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if torch.cuda.is_available() and "cuda" in state["rng"]:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])


class _StopFlag:
    signal_number: int | None = None


@contextlib.contextmanager
def stop_signals() -> Iterator[_StopFlag]:
    """While inside, SIGTERM and SIGINT only set `flag.signal_number` (the loop checkpoints
    and stops at the end of the step); the previous handlers come back on exit."""
    flag = _StopFlag()

    def handler(number, frame) -> None:
        flag.signal_number = number
        print(f"\n{signal.Signals(number).name}: stopping after this step", file=sys.stderr)

    previous = {
        number: signal.signal(number, handler) for number in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield flag
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
