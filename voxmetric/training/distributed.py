"""DistributedDataParallel plumbing for ``torchrun --nproc_per_node N voxmetric train ...``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them every
function here describes a single process and does nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Only rank 0 validates and writes files."""
    return rank() == 0


def is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def session():
    """Initialise the process group under torchrun (NCCL on GPUs, gloo on CPU); tear it down after."""
    started = False
    if is_distributed() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend)
        started = True
    try:
        yield
    except BaseException:
        if started:
            dist.destroy_process_group()
        raise
    if started:
        # Rank 0 may still be working alone (the front-end choice at the end of training): a rank
        # that tore gloo down meanwhile could abort the process at exit. Leave together.
        dist.barrier()
        dist.destroy_process_group()


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """The module wrapped in DDP when running distributed, else the module itself."""
    if not (dist.is_available() and dist.is_initialized()):
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def broadcast_float(value: float | None, device: torch.device) -> float | None:
    """Rank 0's value (e.g. the validation EER) on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    backend_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([float("nan") if value is None else value], dtype=torch.float64, device=backend_device)
    dist.broadcast(tensor, src=0)
    result = float(tensor.item())
    return None if result != result else result


def any_rank(flags: tuple[bool, ...], device: torch.device) -> tuple[bool, ...]:
    """Each flag true on any rank, on every rank: ranks stop on the same batch (time budget,
    signals), so that no rank waits forever in a collective the others have left."""
    if not (dist.is_available() and dist.is_initialized()):
        return tuple(flags)
    backend_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([float(f) for f in flags], device=backend_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in tensor.tolist())
