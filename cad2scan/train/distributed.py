"""Multi-process (multi-GPU, multi-node) training with PyTorch's own engine.

Launch: ``torchrun --nproc_per_node N -m cad2scan train --config ...`` (add ``--nnodes``,
``--node_rank``, ``--rdzv_endpoint`` for several machines). Every process trains a replica
wrapped in ``DistributedDataParallel``: NCCL on CUDA (one GPU per local rank), gloo on CPU.

What is equal to a single-process run of the same global batch (see ``tests/train``):

* Rank r builds only its slots of each step (``cad2scan.train.data.rank_slots``): the
  ranks' samples together are exactly the single-process batch.
* The loss of rank r is ``mean_r * n_r * W / N`` (n_r labelled synthetic points on rank r,
  N over all ranks); DDP averages gradients over the W ranks, which gives the gradient of
  the single-process loss (the mean over all N points), however unevenly points are spread.
* BatchNorm: :class:`SyncSparseBatchNorm` computes batch statistics over all ranks' voxels
  (two differentiable all-reduces per layer, on CPU/gloo and CUDA/NCCL alike; torch's own
  ``SyncBatchNorm`` refuses CPU tensors), so normalisation, running statistics and gradients
  match the single-process network. With ``train.sync_bn: false`` each rank normalises with
  its own statistics (faster; then results are NOT those of the single-process batch).

Equality is up to float rounding (sums in another order): about 1e-6 relative per step;
the replicas themselves stay bitwise identical (all-reduced gradients are the same on every
rank), which :func:`replica_digests` lets a run check at the end.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from cad2scan.errors import ConfigError
from cad2scan.model.sparse import SparseBatchNorm, SparseTensor
from cad2scan.predict import select_device

PROCESS_GROUP_TIMEOUT = timedelta(minutes=60)  # rank 0 may evaluate while the others wait
log = logging.getLogger(__name__)


@dataclass
class DistContext:
    """Where this process sits in the job (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    owns_group: bool = False  # True when init_distributed created the process group

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _rank_device(device: torch.device, local_rank: int) -> torch.device:
    """``cuda:LOCAL_RANK`` (modulo the GPUs visible) for a CUDA request; ``device`` otherwise."""
    if device.type != "cuda":
        return device
    chosen = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.index is not None and device.index != chosen.index:
        log.warning("train.device %s ignored: local rank %d uses %s", device, local_rank, chosen)
    torch.cuda.set_device(chosen)  # before NCCL creates its communicators
    return chosen


def init_distributed(device_name: str = "auto") -> tuple[DistContext, torch.device]:
    """Join the job started by torchrun (or one already initialised by the caller) and pick
    this process's device: ``cuda:LOCAL_RANK`` on GPUs. Without torchrun: a single process."""
    device = select_device(device_name)
    owns = False
    if dist.is_available() and not dist.is_initialized() and _env_int("WORLD_SIZE", 1) > 1:
        device = _rank_device(device, _env_int("LOCAL_RANK", 0))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
        owns = True
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return DistContext(owns_group=owns), device
    rank, world = dist.get_rank(), dist.get_world_size()
    ctx = DistContext(rank, world, _env_int("LOCAL_RANK", rank), _env_int("LOCAL_WORLD_SIZE", world), owns)
    device = _rank_device(device, ctx.local_rank)
    log.info("rank %d of %d (local %d of %d), backend %s, device %s", rank, world, ctx.local_rank,
             ctx.local_world_size, dist.get_backend(), device)
    return ctx, device


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op in a single process); returns it."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_int(value: int, ctx: DistContext, device: torch.device) -> int:
    """Rank 0's ``value`` on every rank."""
    if not ctx.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def gather_strings(text: str, ctx: DistContext) -> list[str]:
    """Every rank's ``text``, in rank order (a single process: ``[text]``)."""
    if not ctx.enabled:
        return [text]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, text)
    return [str(item) for item in out]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks with autograd: the gradient of every rank's input is the sum over
    ranks of the gradients of the output (each rank's loss depends on the shared sum)."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        grad = grad_out.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def differentiable_all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over all ranks, differentiable (see :class:`_AllReduceSum`)."""
    return _AllReduceSum.apply(tensor)


def _global_batch_norm(feats: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """Training-mode batch norm of (N_r, C) ``feats`` with statistics over every rank's rows.

    Two-pass (mean, then centred squares) in float32 or wider, both sums all-reduced with autograd
    support, so gradients flow to every rank's inputs; running statistics are updated like
    ``nn.BatchNorm1d`` does (unbiased variance, momentum or cumulative average).
    """
    x = feats.to(torch.promote_types(feats.dtype, torch.float32))  # float32 at least (bf16/fp16 input)
    channels = x.shape[1]
    count = x.new_tensor([float(x.shape[0])])
    totals = differentiable_all_reduce(torch.cat([x.sum(0), count]))
    n = totals[channels].detach()
    mean = totals[:channels] / n
    centred = x - mean
    var = differentiable_all_reduce((centred * centred).sum(0)) / n
    out = centred * torch.rsqrt(var + bn.eps)
    if bn.affine:
        out = out * bn.weight + bn.bias
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = (1.0 / float(bn.num_batches_tracked)) if bn.momentum is None else bn.momentum
            unbiased = var.detach() * (n / (n - 1).clamp(min=1))
            bn.running_mean.mul_(1 - factor).add_(mean.detach().to(bn.running_mean.dtype), alpha=factor)
            bn.running_var.mul_(1 - factor).add_(unbiased.to(bn.running_var.dtype), alpha=factor)
    return out.to(feats.dtype)


class SyncSparseBatchNorm(SparseBatchNorm):
    """SparseBatchNorm whose training statistics span all ranks of the process group
    (same parameters, buffers and state-dict keys as SparseBatchNorm)."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        return x.replace_feats(_global_batch_norm(x.feats, self))


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every SparseBatchNorm inside ``module`` by a SyncSparseBatchNorm sharing its
    parameters and buffers (so an optimizer built before or after sees the same tensors)."""
    if isinstance(module, SparseBatchNorm) and not isinstance(module, SyncSparseBatchNorm):
        synced = SyncSparseBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                     module.track_running_stats)
        if module.affine:
            synced.weight, synced.bias = module.weight, module.bias
        synced.running_mean, synced.running_var = module.running_mean, module.running_var
        synced.num_batches_tracked = module.num_batches_tracked
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module


def wrap_model(net: nn.Module, ctx: DistContext, sync_bn: bool = True) -> nn.Module:
    """``net`` itself in a single process, else a DistributedDataParallel replica (with
    globally synchronised BatchNorm when ``sync_bn``). ``net`` must already be on its device."""
    if not ctx.enabled:
        return net
    if sync_bn:
        net = convert_sync_batchnorm(net)
    # device_ids=None: the module lives on one device and inputs arrive there already.
    # With synchronised BatchNorm the buffers are equal on all ranks: no need to broadcast
    # them before every forward (torch >= 2.13 names that switch forward_sync_buffers).
    ddp = nn.parallel.DistributedDataParallel
    keyword = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters \
        else "broadcast_buffers"
    return ddp(net, device_ids=None, **{keyword: not sync_bn})


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside a DDP wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def weights_sha256(net: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``net`` (names, dtypes, shapes, bytes)."""
    from cad2scan.train.checkpoint import checkpoint_digest

    return checkpoint_digest(unwrap(net).state_dict(), {})


def replica_digests(net: nn.Module, ctx: DistContext) -> list[str]:
    """:func:`weights_sha256` of every rank's replica, in rank order (all equal when in sync)."""
    return gather_strings(weights_sha256(net), ctx)


def check_global_batch(batch_size: int, ctx: DistContext) -> None:
    if batch_size < ctx.world_size:
        raise ConfigError(f"config key train.batch_size: the global batch ({batch_size}) must hold at least one "
                          f"sample per process ({ctx.world_size} processes)")


def distributed_cross_entropy_scale(local_count: int, total_count: float, ctx: DistContext) -> float:
    """Factor on rank r's mean loss so that DDP's gradient average equals the gradient of the
    mean over all ranks' points: ``n_r * W / N`` (0 when no labelled point exists)."""
    if total_count <= 0:
        return 0.0
    return local_count * ctx.world_size / total_count


__all__ = [
    "DistContext", "SyncSparseBatchNorm", "all_reduce_sum", "barrier", "broadcast_int", "check_global_batch",
    "convert_sync_batchnorm", "distributed_cross_entropy_scale", "gather_strings", "init_distributed",
    "replica_digests", "shutdown_distributed", "unwrap", "weights_sha256", "wrap_model",
]
