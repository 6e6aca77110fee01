"""Data-parallel training: the process group, weight broadcast, gradient averaging, votes.

Under `torchrun --nproc_per_node N -m stages.train ...` every process holds the whole model and
takes 1/N of each batch. What that preserves, exactly:

- **Identical weights on every process after every step.** `synchronise` gives every process
  rank 0's weights and buffers, then averages each gradient over the processes as soon as
  backward has accumulated it, so every family's own optimizers step on the same gradients.
- **The gradient of the whole batch**, for a loss that is a mean over the batch's items and a
  network whose items do not interact. Batch norm makes items interact: without
  `sync_batch_norm` each process normalises by its own share's statistics (and keeps its own
  running statistics; only rank 0's are saved). With `train.common.sync_batch_norm: true` the
  statistics are those of the whole batch (`convert_sync_batch_norm`), as in one process.
- **Not the random draws.** Each process draws its own noise (GAN latents, VAE
  reparameterisation, diffusion times), seeded by (seed, rank, step), so N processes are not
  bit-equal to one process on the whole batch, only equal in distribution.

Flags raised on one process (a NaN loss, a stop signal) reach all of them through `any_rank`,
so every process stops at the same step. NCCL on CUDA (one GPU per process), gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as distributed_functional
import torch.nn.functional as F
from torch import nn

__all__ = [
    "World",
    "join_world",
    "leave_world",
    "synchronise",
    "any_rank",
    "convert_sync_batch_norm",
    "CrossProcessBatchNorm",
]


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


def leave_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def synchronise(model: nn.Module, world: World) -> None:
    """Give every process rank 0's weights and buffers, then average each gradient across
    processes as soon as backward has accumulated it (a post-accumulate hook per parameter).
    The families step their own optimizers inside `train_step`, so the averaging has to happen
    by then; hooks fire in the same order on every rank, because every rank runs the same
    graph."""
    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)

    def average(parameter: torch.Tensor) -> None:
        dist.all_reduce(parameter.grad)
        parameter.grad.div_(world.size)

    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.register_post_accumulate_grad_hook(average)


def any_rank(world: World, *flags: bool) -> list[bool]:
    """Each flag, true when it is true on any process (so every rank stops at the same step).
    Every process must pass the same number of flags."""
    if world.size == 1:
        return list(flags)
    votes = torch.tensor([float(flag) for flag in flags])
    if dist.get_backend() == "nccl":
        votes = votes.cuda()
    dist.all_reduce(votes)
    return [bool(vote > 0) for vote in votes.cpu()]


def convert_sync_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with every BatchNorm layer normalising by the statistics of the whole global
    batch: PyTorch's `SyncBatchNorm` on CUDA, `CrossProcessBatchNorm` on CPU (SyncBatchNorm
    refuses CPU tensors). The layers keep their parameter objects, so optimizers built on the
    model stay valid."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, CrossProcessBatchNorm.replacing(child))
        else:
            convert_sync_batch_norm(child, device)
    return model


class CrossProcessBatchNorm(nn.Module):
    """Batch norm over the union of every process's batch share (training), for CPU/gloo.

    The per-channel sums of x and x^2 and the item counts are all-reduced with the
    differentiable `torch.distributed.nn.functional.all_reduce`, so gradients also flow across
    processes exactly as through one batch norm on the whole batch. Running statistics use the
    unbiased global variance, as `nn.BatchNorm` does. In eval mode, or alone, it is plain
    batch norm.
    """

    def __init__(self, source: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.eps, self.momentum, self.affine = source.eps, source.momentum, source.affine
        self.weight, self.bias = source.weight, source.bias
        self.register_buffer("running_mean", source.running_mean)
        self.register_buffer("running_var", source.running_var)
        self.register_buffer("num_batches_tracked", source.num_batches_tracked)

    @classmethod
    def replacing(cls, source: nn.modules.batchnorm._BatchNorm) -> CrossProcessBatchNorm:
        return cls(source).train(source.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alone = not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1
        if not self.training or alone:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias,
                self.training, self.momentum, self.eps,
            )  # fmt: skip
        dims = [0, *range(2, x.dim())]  # every axis but the channels
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype)
        sums = torch.cat([x.sum(dims), x.pow(2).sum(dims), count])  # (2C + 1,)
        sums = distributed_functional.all_reduce(sums)
        channels = x.shape[1]
        total = sums[-1]
        mean = sums[:channels] / total
        variance = sums[channels : 2 * channels] / total - mean.pow(2)  # biased, as BN uses
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum or 1.0 / float(self.num_batches_tracked)  # None: average
            unbiased = variance * total / (total - 1)
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(unbiased.detach(), momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        normalised = (x - mean.view(shape)) * torch.rsqrt(variance.view(shape) + self.eps)
        if self.affine:
            normalised = normalised * self.weight.view(shape) + self.bias.view(shape)
        return normalised
