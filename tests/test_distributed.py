"""Data-parallel training on CPU with gloo: two processes started by torchrun.

`synchronise` must give every process rank 0's weights and average each gradient, so that a
step on two half-batches equals one step on the whole batch; `any_rank` must carry a flag raised
on one process to all. End to end, `torchrun -m stages.train` must train with both processes
and write the model and logs once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import REPO, random_images, write_params

from aigc.checkpoint import load_checkpoint
from aigc.imagesets import ImageSet, save_image_set
from aigc.models import MODELS

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist
    from torch import nn
    from aigc.distributed import World, any_rank, synchronise

    out, synchronised = sys.argv[1], sys.argv[2] == "sync"
    dist.init_process_group("gloo")
    world = World(dist.get_rank(), dist.get_world_size())
    torch.manual_seed(world.rank)  # different weights on each rank until synchronised
    model = nn.Linear(3, 2)
    if synchronised:
        synchronise(model, world)
    inputs = torch.arange(24, dtype=torch.float32).view(8, 3) / 10
    targets = torch.ones(8, 2)
    share = slice(world.rank * 4, world.rank * 4 + 4)  # this rank's half of the batch
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    start = {k: v.tolist() for k, v in model.state_dict().items()}
    loss = ((model(inputs[share]) - targets[share]) ** 2).mean()
    loss.backward()
    optimizer.step()
    flags = any_rank(world, world.rank == 1, False)
    result = {
        "start": start,
        "end": {k: v.tolist() for k, v in model.state_dict().items()},
        "flags": flags,
    }
    with open(f"{out}/rank{world.rank}.json", "w") as handle:
        json.dump(result, handle)
    dist.destroy_process_group()
    """
)

DCGAN_WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    from aigc.distributed import World, convert_sync_batch_norm, synchronise
    from aigc.models import MODELS

    out, sync_batch_norm = sys.argv[1], sys.argv[2] == "sync"
    dist.init_process_group("gloo")
    world = World(dist.get_rank(), dist.get_world_size())
    config = MODELS["dcgan"].Config(image_size=16, channels=1, num_classes=0, width=8)
    torch.manual_seed(0)
    model = MODELS["dcgan"](config)
    if sync_batch_norm:
        convert_sync_batch_norm(model, torch.device("cpu"))
    synchronise(model, world)
    inputs = torch.Generator().manual_seed(1)
    real = torch.rand(8, 1, 16, 16, generator=inputs) * 2 - 1
    noise = torch.randn(8, config.latent_dim, generator=inputs)
    share = slice(world.rank * 4, world.rank * 4 + 4)  # this rank's half of the batch
    # Both networks' batch norms, on fixed inputs (no per-rank noise).
    loss = model.discriminator(real[share]).mean() + model.discriminator(
        model.generator(noise[share])
    ).mean()
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    buffers = {name: b for name, b in model.named_buffers() if "running" in name}
    torch.save({"grads": grads, "buffers": buffers}, f"{out}/rank{world.rank}.pt")
    dist.destroy_process_group()
    """
)

NAN_WORKER = textwrap.dedent(
    """
    import json, sys
    import torch.distributed as dist
    from aigc.distributed import World
    from aigc.models import MODELS
    from aigc.training import TrainingError, check_finite

    dist.init_process_group("gloo")
    world = World(dist.get_rank(), dist.get_world_size())
    config = MODELS["vae"].Config(image_size=16, channels=1, num_classes=0)
    # Loss "kl" is infinite on rank 1 only; "loss" is finite everywhere.
    losses = {"loss": 1.0, "kl": float("inf") if world.rank == 1 else 0.5}
    try:
        check_finite(losses, world, 7, "vae", config)
        message = None
    except TrainingError as error:
        message = str(error)
    with open(f"{sys.argv[1]}/rank{world.rank}.json", "w") as handle:
        json.dump(message, handle)
    dist.destroy_process_group()
    """
)


def torchrun(arguments: list[str], cwd, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", *arguments]  # fmt: skip
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def run_worker(tmp_path, mode: str) -> list[dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    done = torchrun([str(script), str(tmp_path), mode], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def test_synchronised_halves_step_like_one_process_on_the_whole_batch(tmp_path):
    rank0, rank1 = run_worker(tmp_path, "sync")
    assert rank0["start"] == rank1["start"]  # rank 0's weights were broadcast
    assert rank0["end"] == rank1["end"]
    # One process, the whole batch, from the same start: the same step.
    model = torch.nn.Linear(3, 2)
    model.load_state_dict({k: torch.tensor(v) for k, v in rank0["start"].items()})
    inputs = torch.arange(24, dtype=torch.float32).view(8, 3) / 10
    loss = ((model(inputs) - torch.ones(8, 2)) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= 0.1 * parameter.grad
    for name, value in model.state_dict().items():
        torch.testing.assert_close(torch.tensor(rank0["end"][name]), value)
    assert rank0["flags"] == rank1["flags"] == [True, False]  # raised on rank 1 only


def test_without_synchronising_the_ranks_drift_apart(tmp_path):
    rank0, rank1 = run_worker(tmp_path, "alone")
    assert rank0["end"] != rank1["end"]  # so the test above can fail


def dcgan_halves(tmp_path, mode: str) -> list[dict]:
    script = tmp_path / "dcgan_worker.py"
    script.write_text(DCGAN_WORKER)
    done = torchrun([str(script), str(tmp_path), mode], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]


def dcgan_whole_batch() -> dict:
    """One process, the whole batch of DCGAN_WORKER: the gradients DDP should reproduce."""
    config = MODELS["dcgan"].Config(image_size=16, channels=1, num_classes=0, width=8)
    torch.manual_seed(0)
    model = MODELS["dcgan"](config)
    inputs = torch.Generator().manual_seed(1)
    real = torch.rand(8, 1, 16, 16, generator=inputs) * 2 - 1
    noise = torch.randn(8, config.latent_dim, generator=inputs)
    loss = model.discriminator(real).mean() + model.discriminator(model.generator(noise)).mean()
    loss.backward()
    buffers = {name: b for name, b in model.named_buffers() if "running" in name}
    return {"grads": {name: p.grad for name, p in model.named_parameters()}, "buffers": buffers}


def test_sync_batch_norm_makes_two_dcgan_halves_match_one_whole_batch(tmp_path):
    whole = dcgan_whole_batch()
    for rank in dcgan_halves(tmp_path, "sync"):
        for part in ("grads", "buffers"):
            for name, value in whole[part].items():
                torch.testing.assert_close(rank[part][name], value, atol=2e-5, rtol=1e-4)


def test_without_sync_batch_norm_dcgan_halves_do_not_match_the_whole_batch(tmp_path):
    whole = dcgan_whole_batch()
    rank0, rank1 = dcgan_halves(tmp_path, "plain")
    # Gradients are averaged, so the ranks agree with each other, but each normalised by its
    # own half's statistics: not the whole batch's gradient, and running statistics differ.
    for name in whole["grads"]:
        torch.testing.assert_close(rank0["grads"][name], rank1["grads"][name])
    assert any(
        not torch.allclose(rank0["grads"][name], value, atol=2e-5, rtol=1e-4)
        for name, value in whole["grads"].items()
    )
    assert any(
        not torch.allclose(rank0["buffers"][name], rank1["buffers"][name])
        for name in whole["buffers"]
    )


def test_a_loss_not_finite_on_one_rank_stops_every_rank_naming_that_loss(tmp_path):
    script = tmp_path / "nan_worker.py"
    script.write_text(NAN_WORKER)
    done = torchrun([str(script), str(tmp_path)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank1.startswith("loss kl is inf at step 7 of vae")
    assert rank0.startswith("loss kl is not finite on another process at step 7 of vae")


@pytest.mark.slow
def test_torchrun_trains_a_family_with_two_processes_and_writes_once(tmp_path):
    data = tmp_path / "data"
    save_image_set(data, ImageSet(random_images(96, 1, 16), np.arange(96) % 3, ["a", "b", "c"]))
    overrides = {
        "train": {
            "common": {"device": "cpu", "log_every": 2, "checkpoint_every": 3},
            "dcgan": {"steps": 6, "batch_size": 16, "latent_dim": 8, "width": 8},
        }
    }
    write_params(tmp_path, overrides)
    arguments = ["-m", "stages.train", "--model", "dcgan", "--data", "data", "--out", "model.pt",
                 "--live", "live"]  # fmt: skip
    done = torchrun(arguments, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("dcgan: 6 steps") == 1  # one line, from rank 0
    checkpoint = load_checkpoint(tmp_path / "model.pt")
    assert checkpoint["meta"]["processes"] == 2 and checkpoint["step"] == 6
    assert all(
        torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point()
    )
    assert (tmp_path / "live" / "metrics.json").exists()
    assert not list(tmp_path.glob(".resume/*/last.pt"))  # removed after success

    synced = {"train": {**overrides["train"], "common": {
        **overrides["train"]["common"], "sync_batch_norm": True}}}  # fmt: skip
    write_params(tmp_path, synced)
    done = torchrun([*arguments[:-3], "synced.pt", "--live", "live"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    synced_model = load_checkpoint(tmp_path / "synced.pt")["model"]
    # The same state-dict keys: SyncBatchNorm keeps batch norm's weights and buffers.
    assert synced_model.keys() == checkpoint["model"].keys()

    write_params(tmp_path, {"train": {**overrides["train"], "dcgan": {
        **overrides["train"]["dcgan"], "batch_size": 15}}})  # fmt: skip
    written = (tmp_path / "model.pt").read_bytes()
    odd = torchrun(arguments, cwd=tmp_path)
    assert odd.returncode != 0 and (tmp_path / "model.pt").read_bytes() == written
    assert "train.dcgan.batch_size = 15 does not split evenly over 2 processes" in odd.stderr
