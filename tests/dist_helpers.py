"""Run a function on N gloo ranks, each a fresh process (``torch.multiprocessing``), for tests
that need to patch something inside one rank (where ``torchrun`` is awkward).

The parent waits at most ``timeout`` seconds, then kills the ranks and fails: a test of failure
handling must show that nobody hangs.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from typing import Any, Callable

import torch.multiprocessing as mp

TORCHRUN = ["-m", "torch.distributed.run", "--standalone"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, size: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(size), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., Any], size: int, *args: Any, timeout: float = 240) -> None:
    """``fn(rank, *args)`` on ``size`` gloo ranks; re-raises a rank's exception; fails (after
    killing the ranks) if they are not all done within ``timeout`` seconds."""
    context = mp.start_processes(_entry, args=(size, free_port(), fn, args), nprocs=size,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for p in context.processes:
                if p.is_alive():
                    p.kill()
            raise AssertionError(f"the {size} ranks did not finish within {timeout}s (hang?)")
