"""The one training loop every model family plugs into (flat, top to bottom, nanoGPT style).

    train(family, config, loop, common, image_set, out=..., live_dir=..., resume_dir=...)

builds `MODELS[family](config)` with the seed set, then repeats `model.train_step(images,
labels)` over batches drawn from a per-epoch permutation (seeded by (seed, epoch), so a resumed
run skips exactly the batches already done) until `loop.steps` steps or `loop.epochs` epochs are
done. Around that one call it keeps:

- device and precision: `auto` is CUDA with bf16 autocast and channels_last (the whole training
  array on the GPU when it fits), else CPU in fp32 with `nullcontext()` and deterministic ops;
- an EMA of `model.generator` when `ema_decay > 0` (warm-up min(decay, (1+t)/(10+t)));
- dvclive: losses every `log_every` steps, a sample grid from fixed noise each epoch, params,
  and a summary with train_seconds and images/s; a tqdm bar with the current losses;
- resume checkpoints every `checkpoint_every` steps in `resume_dir` (a git-ignored folder keyed
  by `resume_key`); on start it resumes from one and says so. SIGTERM/SIGINT end the current
  step, save a checkpoint and raise `TrainingStopped`; after a SIGKILL the next run resumes from
  the last periodic checkpoint. On CPU a resumed run ends with the same weights as one that was
  never stopped (the torch RNG state travels in the checkpoint);
- a NaN or Inf loss raises `TrainingError` naming the loss and step; nothing is written to `out`;
- data parallel under `torchrun --nproc_per_node N -m stages.train ...`: every process holds the
  whole model and takes 1/N of each batch; gradients are averaged across processes as each one
  is accumulated (so a family's own optimizers step on the same gradients everywhere), over
  NCCL on CUDA (one GPU per process) or gloo on CPU. Only rank 0 logs and writes files; a NaN
  or a stop signal on any rank stops every rank at the same step.

On success the final checkpoint goes to `out` (aigc.checkpoint) and `resume_dir` is removed.
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
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from aigc.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aigc.images import make_grid
from aigc.imagesets import ImageSet
from aigc.models import MODELS, build_model
from aigc.params import ParamsError, from_dict, read_params, spec

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

GRID_SIZE = 64  # images in the per-epoch sample grid


@dataclass(frozen=True)
class CommonParams:
    """`train.common`: what every family's run shares."""

    device: str = spec(default="auto", choices=("auto", "cpu", "cuda"), doc="where to train")
    precision: str = spec(default="auto", choices=("auto", "fp32", "bf16"), doc="autocast dtype")
    compile: bool = spec(default=False, doc="torch.compile the networks (CUDA only)")
    log_every: int = spec(default=50, ge=1, doc="steps between logged losses")
    checkpoint_every: int = spec(default=200, ge=1, doc="steps between resume checkpoints")
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
    params_path: str | Path, family: str, image_set: ImageSet
) -> tuple[CommonParams, LoopParams, Any, dict]:
    """`train.common` and `train.<family>` checked against the data (cheap: shapes only).

    Returns (common, loop, model config, the raw sections for `resume_key`). The family's
    Config gets image_size, channels and num_classes from `image_set`.
    """
    if family not in MODELS:
        raise ParamsError(f"--model {family!r} is not a model family; allowed: {', '.join(MODELS)}")
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
    count, channels, height, width = image_set.images.shape
    fixed = {"image_size": height, "channels": channels, "num_classes": len(image_set.classes)}
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
            "training images"
        )
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's data-parallel processes
    if loop.batch_size % processes:
        raise ParamsError(
            f"train.{family}.batch_size = {loop.batch_size} does not split evenly over "
            f"{processes} processes; allowed: a multiple of {processes}"
        )
    if getattr(config, "conditional", False) and not image_set.labelled:
        raise ParamsError(
            f"train.{family}.conditional = true needs every training image labelled; "
            "the data has unlabelled items"
        )
    raw = {"family": family, "common": train_section["common"], family: section}
    return common, loop, config, raw


def resume_key(raw_params: Mapping[str, Any], image_set: ImageSet) -> str:
    """A short hash of the family, its params, the common params and the training arrays."""
    digest = hashlib.sha256(json.dumps(raw_params, sort_keys=True, default=str).encode())
    for array in (image_set.images, image_set.labels):
        digest.update(hashlib.sha256(np.ascontiguousarray(array).data).digest())
    return f"{raw_params['family']}-{digest.hexdigest()[:16]}"


def train(
    family: str,
    config: Any,
    loop: LoopParams,
    common: CommonParams,
    image_set: ImageSet,
    *,
    out: str | Path,
    live_dir: str | Path,
    resume_dir: str | Path,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `family` on `image_set`, write the final checkpoint to `out`; returns its meta."""

    device = resolve_device(common.device)
    world = join_world(device)
    try:
        return _train(family, config, loop, common, image_set, device, world, out, live_dir,
                      resume_dir, meta)  # fmt: skip
    finally:
        if world.size > 1:
            dist.destroy_process_group()


def _train(family, config, loop, common, image_set, device, world, out, live_dir, resume_dir, meta):
    """`train` inside its process group (see there)."""
    from dvclive import Live  # imported here: it is slow to import and only training needs it

    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    autocast = precision_context(device, common.precision)
    if device.type == "cuda":  # fast kernels; CPU ops here are deterministic as they are
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    # -- model, EMA, data ---------------------------------------------------------------------
    torch.manual_seed(common.seed)
    model = build_model(family, config).to(device, memory_format=memory_format)
    ema = None
    if loop.ema_decay > 0:
        ema = copy.deepcopy(model.generator).requires_grad_(False).eval()
    if common.compile and device.type == "cuda":
        for child in model.children():
            child.compile()
    images = torch.from_numpy(np.ascontiguousarray(image_set.images))  # uint8 (N, C, H, W)
    labels = torch.from_numpy(np.asarray(image_set.labels, dtype=np.int64))  # (N,)
    if device.type == "cuda" and fits_on_device(images, device):
        images, labels = images.to(device), labels.to(device)
    count = len(images)
    batch_size = loop.batch_size
    steps_per_epoch = count // batch_size  # the last partial batch of an epoch is dropped
    total_steps = loop.steps if loop.steps > 0 else loop.epochs * steps_per_epoch
    total_epochs = math.ceil(total_steps / steps_per_epoch)

    # -- resume -------------------------------------------------------------------------------
    resume_dir = Path(resume_dir)
    resume_path = resume_dir / "last.pt"
    step, train_seconds = 0, 0.0
    if resume_path.exists():
        try:
            state = load_checkpoint(resume_path, map_location=device)
            restore(model, ema, state)
        except (CheckpointError, RuntimeError, KeyError, ValueError) as error:
            print(f"warning: cannot resume from {resume_path} ({error}); starting afresh")
            torch.manual_seed(common.seed)
            model = build_model(family, config).to(device, memory_format=memory_format)
            if ema is not None:
                ema = copy.deepcopy(model.generator).requires_grad_(False).eval()
        else:
            step, train_seconds = state["step"], state["meta"]["train_seconds"]
            print(f"resuming {family} from step {step} ({resume_path})", flush=True)
    model.train()
    if world.size > 1:  # same weights everywhere, averaged gradients, each rank its own noise
        synchronise(model, world)
        torch.manual_seed(common.seed + 1000 * world.rank + step)

    def payload(step: int, extra_meta: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "family": family,
            "config": dataclasses.asdict(config),
            "model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "optimizers": {name: opt.state_dict() for name, opt in model.optimizers.items()},
            "step": step,
            "epoch": step // steps_per_epoch,
            "rng": rng_state(),
            "meta": {**(meta or {}), "train_seconds": train_seconds, **extra_meta},
        }

    # -- logging ------------------------------------------------------------------------------
    live = (
        Live(str(live_dir), dvcyaml=None, save_dvc_exp=False, resume=step > 0)
        if world.main
        else _Quiet()
    )
    live.log_params(
        {
            "family": family,
            **plain(dataclasses.asdict(config)),
            **dataclasses.asdict(loop),
            **dataclasses.asdict(common),
        }
    )
    bar = tqdm(
        total=total_steps,
        initial=step,
        desc=family,
        dynamic_ncols=True,
        mininterval=1.0,
        disable=not world.main,
    )
    running: dict[str, float] = {}  # loss sums since the last log
    running_steps = 0

    # -- the loop: one train_step per batch ---------------------------------------------------
    start_step = step
    run_started = started = time.perf_counter()  # started: since train_seconds was last added
    permutation, permutation_epoch = None, -1
    with stop_signals() as stop:
        while step < total_steps:
            epoch, index = divmod(step, steps_per_epoch)
            if epoch != permutation_epoch:
                permutation = epoch_permutation(count, common.seed, epoch).to(images.device)
                permutation_epoch = epoch
            batch = permutation[index * batch_size : (index + 1) * batch_size]
            batch = batch[world.rank :: world.size]  # this process's share
            batch_images = images[batch].to(device, non_blocking=True).float().div_(255)
            batch_images = batch_images.contiguous(memory_format=memory_format)
            batch_labels = labels[batch].to(device, non_blocking=True)
            with autocast:
                losses = model.train_step(batch_images, batch_labels)
            finite = all(math.isfinite(value) for value in losses.values())
            [not_finite] = any_rank(world, not finite)
            for name, value in losses.items():
                if not_finite and (world.size > 1 or not math.isfinite(value)):
                    bar.close()
                    live.end()
                    rate = getattr(config, "learning_rate", None)
                    raise TrainingError(
                        f"loss {name} is {value} at step {step + 1} (epoch {epoch + 1}) of "
                        f"{family}; training stopped and no model was written. Hint: lower "
                        f"train.{family}.learning_rate (now {rate}) or check the data"
                    )
            if ema is not None:
                update_ema(ema, model.generator, min(loop.ema_decay, (1 + step) / (10 + step)))
            step += 1
            bar.update(1)

            for name, value in losses.items():
                running[name] = running.get(name, 0.0) + value
            running_steps += 1
            if step % common.log_every == 0 or step == total_steps:
                live.step = step
                for name, total in running.items():
                    live.log_metric(f"train/{name}", total / running_steps)
                live.log_metric("epoch", step / steps_per_epoch)
                live.make_summary()
                bar.set_postfix({k: f"{v / running_steps:.3g}" for k, v in running.items()})
                running, running_steps = {}, 0
            if world.main and (step % steps_per_epoch == 0 or step == total_steps):
                grid = sample_grid(model, ema, common.seed, autocast)
                live.log_image(f"samples/epoch_{math.ceil(step / steps_per_epoch):03d}.png", grid)
                losses_text = ", ".join(f"{k} {v:.3g}" for k, v in losses.items())
                bar.write(
                    f"{family}: epoch {math.ceil(step / steps_per_epoch)}/{total_epochs}, "
                    f"step {step}/{total_steps}: {losses_text}"
                )
            [stopping] = any_rank(world, stop.signal_number is not None)
            if stopping or (step % common.checkpoint_every == 0 and step < total_steps):
                train_seconds += time.perf_counter() - started
                started = time.perf_counter()
                if world.main:
                    save_checkpoint(resume_path, payload(step, {}))
            if stopping:
                bar.close()
                live.end()
                number = stop.signal_number or signal.SIGTERM  # another rank's signal
                name = signal.Signals(number).name
                raise TrainingStopped(
                    f"{name}: stopped {family} at step {step}/{total_steps}; checkpoint saved "
                    f"to {resume_path}; run again to resume",
                    number,
                )
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds += time.perf_counter() - started
    elapsed = time.perf_counter() - run_started
    done_images = (step - start_step) * batch_size
    images_per_second = done_images / elapsed if elapsed > 0 and done_images else 0.0

    # -- the result ---------------------------------------------------------------------------
    final_meta = {
        "images_per_second": images_per_second,
        "steps": total_steps,
        "epochs": total_steps / steps_per_epoch,
        "batch_size": batch_size,
        "device": str(device),
        "processes": world.size,
        "precision": "bf16" if isinstance(autocast, torch.autocast) else "fp32",
        "torch": str(torch.__version__),
    }
    if world.main:
        save_checkpoint(out, payload(step, final_meta))
        live.summary["train_seconds"] = train_seconds
        live.summary["images_per_second"] = images_per_second
        live.end()
        shutil.rmtree(resume_dir, ignore_errors=True)
    return {**(meta or {}), "train_seconds": train_seconds, **final_meta}


# ---------------------------------------------------------------------------------------------
# The pieces the loop uses.


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes (one, outside torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def join_world(device: torch.device) -> World:
    """Under torchrun (WORLD_SIZE > 1), join the process group: NCCL with one GPU per process
    on CUDA, gloo on CPU. Alone, the trivial world, and nothing is initialised."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def synchronise(model: nn.Module, world: World) -> None:
    """Give every process rank 0's weights, then average each gradient across processes as soon
    as backward has accumulated it (a post-accumulate hook per parameter). The families step
    their own optimizers inside `train_step`, so the averaging has to happen by then; hooks
    fire in the same order on every rank, because every rank runs the same graph."""
    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)

    def average(parameter: torch.Tensor) -> None:
        dist.all_reduce(parameter.grad)
        parameter.grad.div_(world.size)

    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.register_post_accumulate_grad_hook(average)


def any_rank(world: World, *flags: bool) -> list[bool]:
    """Each flag, true when it is true on any process (so every rank stops at the same step)."""
    if world.size == 1:
        return list(flags)
    votes = torch.tensor([float(flag) for flag in flags])
    if dist.get_backend() == "nccl":
        votes = votes.cuda()
    dist.all_reduce(votes)
    return [bool(vote > 0) for vote in votes.cpu()]


class _Quiet:
    """Stands in for dvclive's `Live` on ranks other than 0: logs nothing."""

    step = 0
    summary: dict[str, Any] = {}

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError("train.common.device = 'cuda' but no CUDA device is available")
    return torch.device(name)


def precision_context(device: torch.device, precision: str):
    """bf16 autocast on CUDA (or when asked), else a no-op context (fp32)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fits_on_device(images: torch.Tensor, device: torch.device) -> bool:
    """True when the uint8 training array takes under a quarter of the free GPU memory."""
    free, _ = torch.cuda.mem_get_info(device)
    return images.numel() < free // 4


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
def sample_grid(model, ema: nn.Module | None, seed: int, autocast) -> np.ndarray:
    """A grid of GRID_SIZE samples from fixed noise (the EMA weights when kept), (H, W[, C])."""
    model.eval()
    raw_weights = None
    if ema is not None:
        raw_weights = copy.deepcopy(model.generator.state_dict())
        model.generator.load_state_dict(ema.state_dict())
    with autocast:
        samples = model.sample(GRID_SIZE, generator=torch.Generator().manual_seed(seed))
    if raw_weights is not None:
        model.generator.load_state_dict(raw_weights)
    model.train()
    grid = make_grid(samples)  # (C, H, W) uint8
    return grid[0] if grid.shape[0] == 1 else np.transpose(grid, (1, 2, 0))


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


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Config values as dvclive params accept them (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
