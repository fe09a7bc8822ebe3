"""DDP plumbing: works under ``torchrun`` (env vars) and in a single process alike.

* backend: ``nccl`` on CUDA, ``gloo`` on CPU;
* every rank builds the same model from the same seed; ``DistributedDataParallel``
  broadcasts rank 0's parameters and buffers anyway;
* the loss of each rank is normalised by GLOBAL counts and multiplied by the world size,
  so DDP's gradient averaging yields exactly the gradient of the global batch;
* only rank 0 logs, shows progress and writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def setup(device: str | torch.device | None = None) -> tuple[DistInfo, torch.device]:
    """Initialise the process group when launched by torchrun; pick the device.

    ``device``: ``None``/``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``.
    Under torchrun with CUDA each rank uses ``cuda:LOCAL_RANK``.
    """
    want = None if device in (None, "auto") else torch.device(device)
    use_cuda = torch.cuda.is_available() if want is None else want.type == "cuda"
    info = DistInfo()
    if dist.is_available() and dist.is_initialized():
        info.rank, info.world_size = dist.get_rank(), dist.get_world_size()
        info.local_rank = int(os.environ.get("LOCAL_RANK", info.rank))
    elif launched_by_torchrun():
        backend = "nccl" if use_cuda else "gloo"
        info.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
        info.rank, info.world_size = dist.get_rank(), dist.get_world_size()
        info.initialized_here = True
    if not use_cuda:
        return info, torch.device("cpu")
    if info.enabled:
        return info, torch.device("cuda", info.local_rank)
    return info, torch.device("cuda", want.index if want is not None and want.index is not None else 0)


def teardown(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over ranks (in place on a copy); a no-op in one process."""
    if not info.enabled:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_dict(d: dict[str, torch.Tensor], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Sum float64 scalars with the same keys on all ranks; returns plain floats."""
    keys = sorted(d)
    if not info.enabled:
        return {k: float(d[k]) for k in keys}
    # ranks may differ in which keys they hold (e.g. no forces in a shard): agree on the union
    gathered: list = [None] * info.world_size
    dist.all_gather_object(gathered, keys)
    keys = sorted(set().union(*gathered))
    vec = torch.stack([d[k].double().to(device) if k in d else torch.zeros((), dtype=torch.float64, device=device)
                       for k in keys])
    dist.all_reduce(vec, op=dist.ReduceOp.SUM)
    return {k: float(v) for k, v in zip(keys, vec.cpu())}


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_object(obj, info: DistInfo, src: int = 0):
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
