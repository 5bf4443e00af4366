"""Which processes share a job: the process group, this process's rank in it, and how to start
one from ``torchrun``'s environment.

Why a resolution step: library users who embed vidmem in their own ``torch.distributed`` code must
stay in control (they may pass a sub-group, or ``False`` to render alone under ``torchrun``), while
the command line starts the group itself. Everything else in :mod:`vidmem.parallel` works on the
resolved :class:`Group`, never on ``torch.distributed``'s global state.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import InvalidOptions

#: Default collective timeout of a split job started by the CLI: long enough for one chunk's
#: decode on a slow device, short enough that a hung rank does not block the others for hours.
SPLIT_TIMEOUT_S = 1800.0
#: Default for batch jobs: ranks render whole clips independently and meet only at the start and
#: the end, so the end waits for the slowest rank's share of the clips.
BATCH_TIMEOUT_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Group:
    """A resolved process group of more than one process.

    ``pg`` is what ``torch.distributed`` calls take as ``group=``; ``rank``/``size`` are this
    process's rank in it and its size (not the world's, when a sub-group was given).
    """

    pg: Any
    rank: int
    size: int
    backend: str

    @property
    def is_writer(self) -> bool:
        """Rank 0 of the group writes files and prints progress."""
        return self.rank == 0

    def global_rank(self, group_rank: int) -> int:
        """The world rank of ``group_rank`` (point-to-point calls address world ranks)."""
        return dist.get_global_rank(self.pg, group_rank) if self.pg is not dist.group.WORLD \
            else group_rank

    def uses_nccl_for(self, device: torch.device) -> bool:
        """Whether tensors on ``device`` travel through NCCL (else they go through host memory)."""
        return device.type == "cuda" and "nccl" in self.backend


def resolve_group(process_group: Any = None) -> Group | None:
    """The group a job is split over, or ``None`` when this process works alone.

    ``process_group``: ``None`` (default) means the world group when ``torch.distributed`` is
    initialized with more than one process, else none; ``False`` means never split (e.g. each rank
    of a batch renders whole clips alone); a ``ProcessGroup`` is used as given (a group of one
    process is the same as none). A :class:`Group` is returned unchanged.
    """
    if process_group is False:
        return None
    if isinstance(process_group, Group):
        return process_group
    if process_group is None:
        if not (dist.is_available() and dist.is_initialized()):
            return None
        pg = dist.group.WORLD
    else:
        if not (dist.is_available() and dist.is_initialized()):
            raise InvalidOptions("a process_group was given but torch.distributed is not "
                                 "initialized (call torch.distributed.init_process_group first)")
        pg = process_group
    size = dist.get_world_size(pg)
    rank = dist.get_rank(pg)
    if rank < 0:
        raise InvalidOptions("this process is not a member of the process_group it was given")
    if size <= 1:
        return None
    return Group(pg=pg, rank=rank, size=size, backend=str(dist.get_backend(pg)))


def launched_world_size() -> int:
    """The number of processes ``torchrun`` (or any ``env://`` launcher) started; 1 otherwise."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_from_environment(timeout_s: float) -> bool:
    """Join the process group that ``torchrun`` describes in the environment.

    Backend: ``cpu:gloo,cuda:nccl`` when CUDA is available (tiles travel between GPUs through
    NCCL, small control messages through gloo, whose collectives honour the timeout), else
    ``gloo``. Each rank takes GPU ``LOCAL_RANK``. Returns whether a group was started here (the
    caller then destroys it when done); ``False`` when not launched by ``torchrun`` with more than
    one process, or when a group already exists.
    """
    if launched_world_size() <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    if torch.cuda.is_available() and dist.is_nccl_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def shutdown(started_here: bool, wait_s: float = 30.0) -> None:
    """Destroy the process group if :func:`init_from_environment` started it, once every rank is
    ready to.

    Why wait: a gloo collective can return on one rank while its last message to another is still
    in flight; a rank that then destroys its group and exits closes the connection under the
    other, whose gloo thread fails and aborts the process ("terminate called without an active
    exception", seen on a loaded 2-core machine after a 2-rank batch had written every clip).
    So each rank first marks itself done in the group's key-value store and waits (at most
    ``wait_s``: a rank that died does not hold the others) until every rank has.
    """
    if not (started_here and dist.is_initialized()):
        return
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set(f"vidmem/shutdown/{dist.get_rank()}", "1")
        store.wait([f"vidmem/shutdown/{r}" for r in range(dist.get_world_size())],
                   datetime.timedelta(seconds=wait_s))
    except Exception:  # noqa: BLE001 - a store that fails or times out: leave anyway
        pass
    dist.destroy_process_group()
