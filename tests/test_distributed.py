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

    write_params(tmp_path, {"train": {**overrides["train"], "dcgan": {
        **overrides["train"]["dcgan"], "batch_size": 15}}})  # fmt: skip
    written = (tmp_path / "model.pt").read_bytes()
    odd = torchrun(arguments, cwd=tmp_path)
    assert odd.returncode != 0 and (tmp_path / "model.pt").read_bytes() == written
    assert "train.dcgan.batch_size = 15 does not split evenly over 2 processes" in odd.stderr
