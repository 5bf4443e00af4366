"""The ``vidmem`` commands under ``torchrun``: join the process group, split one clip, end
every rank together.

``torchrun --nproc-per-node N -m vidmem render ...`` (or ``decode``) splits one clip over the N
processes (also without ``--split``: several processes and no ``--prompts`` mean a split);
``--prompts`` makes it a batch instead (``cmd_batch``). Rank 0 alone prints progress, the report
and errors; the other ranks are quiet. When any rank fails, every rank stops (see
:mod:`vidmem.parallel.session`), rank 0 prints one line naming the rank and its error, and all
ranks leave together, so ``torchrun`` does not tear rank 0 down before it has said why.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable

from ..errors import GroupBroken

from .errors import INTERRUPTED_STATUS, report_error
from .options import positive_float, positive_int

log = logging.getLogger("vidmem")


def add_split_options(p: argparse.ArgumentParser, *, context_parallel: bool) -> None:
    """``--split``, ``--dist-timeout`` (and for ``render`` the context-parallel degrees)."""
    g = p.add_argument_group("several processes (torchrun --nproc-per-node N -m vidmem ...)")
    g.add_argument("--split", action="store_true",
                   help="split this clip over the processes torchrun started: each decodes "
                        "its share of the tiles, rank 0 writes (the default when torchrun "
                        "started several processes and no --prompts is given)")
    if context_parallel:
        g.add_argument("--ring-degree", type=positive_int, default=None, metavar="N",
                       help="with --split on CUDA GPUs (NCCL): ring-attention degree of "
                            "diffusers' context parallelism for the transformer (default: chosen, see "
                            "--ulysses-degree)")
        g.add_argument("--ulysses-degree", type=positive_int, default=None, metavar="N",
                       help="likewise, the Ulysses degree (default: Ulysses over every rank when "
                            "the attention heads divide evenly, else ring)")
    g.add_argument("--dist-timeout", type=positive_float, default=None, metavar="SECONDS",
                   help="how long a rank waits for the others before giving up (default: 1800 "
                        "for --split, a week for --prompts, where ranks meet only at the end)")


class RankJob:
    """This process's part of a command: alone (a :class:`~vidmem.parallel.SoloSession`), or one
    rank of a command ``torchrun`` started several times (one clip split over the ranks, or a
    batch). The subcommands run the same code either way."""

    def __init__(self, session: Any = None, started_group: bool = False):
        self._session = session  # None: alone, the SoloSession made on first use
        self.started_group = started_group

    @property
    def session(self) -> Any:
        """The session the API calls take as ``process_group`` (importing it needs torch, so a
        job alone makes its :class:`~vidmem.parallel.SoloSession` only when asked)."""
        if self._session is None:
            from ..parallel import SoloSession

            self._session = SoloSession()
        return self._session

    @property
    def splits(self) -> bool:
        """Whether other processes share this job."""
        return self._session is not None and self._session.splits

    @property
    def is_writer(self) -> bool:
        return not self.splits or self._session.is_writer

    @property
    def rank_prefix(self) -> str:
        """``"[rank K] "`` for a line a rank prints about its own share; empty when alone."""
        return f"[rank {self._session.rank}] " if self.splits else ""

    @classmethod
    def start(cls, args: argparse.Namespace, *, batch: bool = False) -> "RankJob":
        """Join ``torchrun``'s group when it started several processes; otherwise a job of this
        process alone (then ``--split`` has nothing to split, which is said once). In a split
        job the ranks other than 0 are made quiet; in a batch each rank reports its own clips."""
        if "WORLD_SIZE" not in os.environ and not getattr(args, "split", False):
            return cls()  # not launched by torchrun: answered without importing torch
        from ..parallel import SplitSession, init_from_environment
        from ..parallel.group import BATCH_TIMEOUT_S, SPLIT_TIMEOUT_S, launched_world_size

        if launched_world_size() <= 1:
            if getattr(args, "split", False) and not args.quiet:
                print("note: --split with one process: nothing to split (launch with torchrun "
                      "--nproc-per-node N)", file=sys.stderr)
            return cls()
        timeout = args.dist_timeout or (BATCH_TIMEOUT_S if batch else SPLIT_TIMEOUT_S)
        started = init_from_environment(timeout)
        session = SplitSession.resolve(None)
        if not session.is_writer and not batch:  # rank 0 alone prints progress and the report
            args.quiet = True
            args.json = False
            logging.getLogger("vidmem").setLevel(logging.ERROR)
        return cls(session, started)

    def log(self, message: str, args: argparse.Namespace) -> None:
        if self.is_writer and not args.quiet:
            print(message, file=sys.stderr)

    def prepare_pipeline(self, pipe: Any, args: argparse.Namespace, offload: Any = None) -> None:
        """Context parallelism for the transformer where diffusers supports it (every rank must
        agree on the outcome, or the ranks' denoising would not match). ``offload``: the
        render's offload plan, which decides where the transformer runs. Alone: nothing to do."""
        if not self.splits:
            return
        from ..parallel import enable_context_parallel

        result = enable_context_parallel(pipe, self.session.group,
                                         getattr(args, "ring_degree", None),
                                         getattr(args, "ulysses_degree", None),
                                         device=offload.device if offload is not None else None)
        outcomes = self.session.agree(str(result))
        if len(set(outcomes)) > 1:
            raise GroupBroken(f"the ranks disagree on context parallelism: {outcomes}")
        self.log(f"split over {self.session.size} processes ({self.session.group.backend}); "
                 f"{result}", args)

    def run(self, body: Callable[[], int]) -> int:
        """Run the command's ``body`` on this rank and end every rank together (alone: run it;
        errors go to the command line's handler)."""
        if not self.splits:
            return body()
        from ..parallel import GroupBroken, RankFailed, shutdown
        from ..parallel.session import already_agreed

        try:
            return body()
        except BaseException as e:  # noqa: BLE001 - every rank must leave through here
            if not (already_agreed(e) or self.session.broken):
                try:
                    self.session.fail(e)  # the other ranks learn of it at their next agreement
                except (RankFailed, GroupBroken):
                    pass
            code = report_error(e) if self.is_writer else (
                INTERRUPTED_STATUS if isinstance(e, KeyboardInterrupt) else 1)
            if not self.session.broken:
                try:  # leave together: rank 0 has printed why before torchrun stops anyone
                    self.session.agree()
                except (RankFailed, GroupBroken):
                    pass
            return code
        finally:
            shutdown(self.started_group)
