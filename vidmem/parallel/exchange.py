"""One decode shared by the ranks of a split job: who decodes what, and how the results reach
rank 0 (the streaming engine's ``split=`` hook, :class:`vidmem.decode.stream.WorkSplit`).

Assignment. The unit of work is either a spatial tile of each temporal chunk (``"tiles"``: rank
``i % size`` decodes tile ``i`` of every chunk, so it carries the causal caches of its own tiles
from chunk to chunk and no cache ever moves) or, for families that decode independent overlapping
windows, a whole window (``"windows"``: rank ``k % size`` decodes window ``k``, all its tiles,
blended). ``"auto"`` picks whichever shares out more evenly (see :func:`choose_mode`; on equal
terms tiles, which measured faster). Both give rank 0 exactly the tensors a single process
computes.

Gathering. Rank 0 walks the items in their single-process order: it decodes its own and receives
the others', one at a time, so its blend sees the same tensors in the same accumulation order as a
single process (bit-identical output) and holds one received piece at a time (its peak memory is
that of a single process). The other ranks decode their items in the same order and send each as
soon as it is done (at most one send in flight). Work is grouped in *rounds* (one chunk's tiles,
or ``size`` consecutive windows); each round begins with an agreement (see
:mod:`vidmem.parallel.session`), so a failure anywhere stops every rank within one round.

Messages. Each item travels as a small int64 header (ok / failed, shape) followed, if ok, by the
float32 data. A rank that fails mid-round sends "failed" headers for the items it still owed, and
rank 0 drains whatever is still coming, so no message is left unmatched when all ranks then meet
at the agreement that reports the failure.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterator, Literal

import torch
import torch.distributed as dist

from ..decode.stream import DecodePlan
from ..errors import InvalidOptions
from .session import (GroupBroken, RankFailed, SplitSession, already_agreed,
                      describe_transport)

SplitBy = Literal["auto", "tiles", "windows"]

_OK, _FAILED = 0, 1
_HEADER_LEN = 10  # status, dtype code, ndim, up to 7 dims
_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def plan_fingerprint(plan: DecodePlan) -> tuple:
    """What every rank must agree on for a shared decode: the shapes, tiles and windows."""
    return (plan.family, plan.streaming, plan.latent_shape, plan.chunk_latents,
            plan.context_latents, plan.blend_frames, plan.tile_latent, plan.tile_overlap_latent,
            tuple(plan.windows), tuple(plan.tiles))


def choose_mode(plan: DecodePlan, by: SplitBy, size: int = 2) -> Literal["tiles", "windows"]:
    """Tiles or windows over ``size`` ranks (see the module docstring); ``by`` forces one where
    it is possible.

    ``"auto"``: windows only for a window family whose windows share out more evenly than its
    tiles (the busiest rank's fraction of the work, ``ceil(n / size) / n``, is smaller), tiles
    otherwise. Measured (benchmarks/RESULTS.md, HunyuanVideo, 12 tiles x 3 windows on 2 ranks):
    tiles 1.59x, windows 1.43x, as the 2 + 1 split of the windows predicts; with one tile per
    frame, windows are the only way to share the work.
    """
    if by == "windows":
        if plan.streaming != "window":
            raise InvalidOptions(f"the {plan.family} VAE carries its causal cache from chunk to chunk "
                             f"({plan.streaming} streaming): its windows depend on each other and "
                             f"cannot be split; split by tiles")
        return "windows"
    if by == "tiles":
        return "tiles"
    if by != "auto":
        raise InvalidOptions(f"split_by must be 'auto', 'tiles' or 'windows', got {by!r}")
    if plan.streaming != "window" or len(plan.windows) < 2:
        return "tiles"

    def busiest(n: int) -> float:
        return -(-n // size) / n

    return "windows" if busiest(len(plan.windows)) < busiest(len(plan.tiles)) else "tiles"


class DecodeSplit:
    """Share one decode among the ranks of ``session`` (pass to :func:`vidmem.decode_latents`
    as ``split=``; :func:`vidmem.decode_to_video` builds one from its ``process_group``).

    Every rank runs the same stream with the same plan; rank 0's stream yields the frames, the
    others' yield nothing. ``by``: ``"auto"``, ``"tiles"`` or ``"windows"`` (module docstring).
    """

    def __init__(self, session: SplitSession, by: SplitBy = "auto"):
        self.session = session
        self.by = by
        self.mode: Literal["tiles", "windows"] = "tiles"
        self._device = torch.device("cpu")
        self._active = False
        self._pending: deque[int] = deque()  # items of the current round not yet handled
        self._sends: list[tuple[Any, torch.Tensor]] = []  # in-flight sends and their buffers
        self._peer_failed = False  # rank 0: a "failed" header arrived this round
        #: items this rank decoded in the last stream (for reports and tests).
        self.items_done = 0

    # --- the WorkSplit protocol ------------------------------------------------------------
    def start(self, plan: DecodePlan, device: torch.device) -> None:
        """Check that every rank planned the same decode, choose the mode, open the stream."""
        self._device = device
        self._pending.clear()
        self._peer_failed = False
        self.items_done = 0
        fingerprints = self.session.agree(plan_fingerprint(plan))
        if any(f != fingerprints[0] for f in fingerprints[1:]):
            raise InvalidOptions("the ranks planned different decodes (different latents, VAE or "
                             "tiling options); every rank must decode the same latents with the "
                             "same options")
        self.mode = choose_mode(plan, self.by, self.session.size)
        self._active = True

    def owner(self, item: int) -> int:
        """The rank that decodes ``item`` (round robin: equal shares, interleaved in time)."""
        return item % self.session.size

    def gather(self, items: range, produce: Callable[[int], torch.Tensor]
               ) -> Iterator[tuple[int, torch.Tensor]]:
        """Rank 0: ``(i, result)`` for every item in order; other ranks: their items are produced
        and sent, nothing is yielded."""
        order = list(items)
        per_round = self.session.size if self.mode == "windows" else max(1, len(order))
        rank = self.session.rank
        for start in range(0, len(order), per_round):
            self.session.agree()
            self._pending = deque(order[start:start + per_round])
            while self._pending:
                item = self._pending[0]
                owner = self.owner(item)
                if rank == 0:
                    if owner == 0:
                        result = produce(item)
                        self.items_done += 1
                    else:
                        result = self._recv(owner)
                    self._pending.popleft()
                    if result is None:  # the owner failed: drain this round, then report
                        self._peer_failed = True
                        self._drain()
                        break
                    yield item, result
                    del result  # not kept alive while the next item is produced
                elif owner == rank:
                    result = produce(item)
                    self.items_done += 1
                    self._send(result)  # kept by the send until it completes, not here
                    del result
                    self._pending.popleft()
                else:
                    self._pending.popleft()
            self._wait_sends()
            if self._peer_failed:
                self._active = False
                self.session.agree()  # the failed rank reports its error here: raises RankFailed

    def finish(self) -> None:
        """The stream ended on this rank: meet the others once more (a failure in the last
        round is reported here)."""
        self._wait_sends()
        self._active = False
        self.session.agree()

    def stop(self, error: BaseException | None) -> None:
        """This rank failed (``error``), or its consumer stopped reading (``None``): finish the
        round's messages and tell every rank. Raises :class:`RankFailed` for an error; for a
        consumer that stopped, returns quietly after telling the others (the consumer has its own
        exception to raise)."""
        if not self._active or self.session.broken:
            return
        self._active = False
        if error is not None and already_agreed(error):
            return  # every rank already knows
        try:
            self._drain()
            self._wait_sends()
        except GroupBroken:
            return
        cause = error if error is not None else RuntimeError(
            "stopped before the end of the decode (the frames' consumer failed)")
        try:
            self.session.fail(cause)
        except (RankFailed, GroupBroken):
            if error is not None:
                raise

    # --- messages --------------------------------------------------------------------------
    def _comm_device(self, device: torch.device) -> torch.device:
        return device if self.session.group.uses_nccl_for(device) else torch.device("cpu")

    def _send(self, tensor: torch.Tensor | None) -> None:
        """Send ``tensor`` (or a "failed" header for ``None``) to rank 0, keeping at most one
        send in flight so a fast rank does not pile up decoded pieces in memory."""
        self._wait_sends()
        comm = self._comm_device(tensor.device if tensor is not None else self._device)
        header = torch.zeros(_HEADER_LEN, dtype=torch.int64)
        if tensor is None:
            header[0] = _FAILED
        else:
            if tensor.ndim > _HEADER_LEN - 3:
                raise ValueError(f"cannot send a {tensor.ndim}-D tensor")
            header[1] = _DTYPES.index(tensor.dtype)
            header[2] = tensor.ndim
            header[3:3 + tensor.ndim] = torch.tensor(tensor.shape)
        dst = self.session.group.global_rank(0)
        pg = self.session.group.pg
        try:
            header = header.to(comm)
            self._sends.append((dist.isend(header, dst, group=pg), header))
            if tensor is not None:
                data = tensor.detach().to(comm).contiguous()
                self._sends.append((dist.isend(data, dst, group=pg), data))
        except Exception as e:  # noqa: BLE001 - transport errors end the group
            self.session.broken = True
            raise GroupBroken(f"sending to rank 0 failed ({describe_transport(e)})") from e

    def _wait_sends(self) -> None:
        try:
            for work, _ in self._sends:
                work.wait()
        except Exception as e:  # noqa: BLE001
            self.session.broken = True
            raise GroupBroken(f"sending to rank 0 failed ({describe_transport(e)})") from e
        finally:
            self._sends.clear()

    def _recv(self, owner: int) -> torch.Tensor | None:
        """Rank 0: the next item from ``owner`` on the decode's device, or ``None`` if it failed."""
        comm = self._comm_device(self._device)
        src = self.session.group.global_rank(owner)
        pg = self.session.group.pg
        try:
            header = torch.empty(_HEADER_LEN, dtype=torch.int64, device=comm)
            dist.recv(header, src, group=pg)
            header = header.cpu()
            if int(header[0]) == _FAILED:
                return None
            ndim = int(header[2])
            shape = [int(d) for d in header[3:3 + ndim]]
            data = torch.empty(shape, dtype=_DTYPES[int(header[1])], device=comm)
            dist.recv(data, src, group=pg)
        except Exception as e:  # noqa: BLE001
            self.session.broken = True
            raise GroupBroken(f"receiving from rank {owner} failed ({describe_transport(e)}): it "
                              f"died, or hung longer than the process group's timeout") from e
        return data.to(self._device)

    def _drain(self) -> None:
        """Finish the current round's messages after a failure: rank 0 receives (and drops)
        what the others still send; another rank sends "failed" for the items it still owes."""
        rank = self.session.rank
        while self._pending:
            item = self._pending.popleft()
            owner = self.owner(item)
            if rank == 0 and owner != 0:
                self._recv(owner)
            elif rank != 0 and owner == rank:
                self._send(None)
