"""Device -> host transfer of decoded uint8 chunks through one reused (pinned) staging buffer.

Why: on a GPU the decode is fast and what follows it is not free: allocating pinned host memory
for every chunk is slow (``cudaHostAlloc`` maps and locks pages), a pageable copy is slower than
a pinned one, and a synchronous copy leaves the GPU idle while the bytes cross the bus. Here the
chunk is converted to uint8 on the device first (4x fewer bytes than float32), then copied on a
side stream into one pinned buffer that is allocated once (grown only if a later chunk is larger)
and reused for every chunk; the caller starts the copy of chunk ``k`` and only waits for it after
it has queued the decode of chunk ``k + 1``, so the copy runs while the GPU decodes.

The caller owns what :meth:`HostStager.collect` returns (a pageable host tensor: the staging
buffer is overwritten by the next chunk, and the writer's queue may hold a chunk for a while).

Without CUDA the same object works synchronously (a plain, unpinned buffer; no streams), so the
buffer reuse is testable anywhere; the CPU decode path does not use it (its chunks are already on
the host).
"""

from __future__ import annotations

import torch


class HostStager:
    """One chunk in flight from ``device`` to the host at a time: :meth:`submit`, then
    :meth:`collect` before the next :meth:`submit`."""

    def __init__(self, device: torch.device | str, capacity: int = 0):
        """``capacity``: bytes of the largest chunk expected (the decode plan knows it), so the
        one buffer is allocated up front at its final size; a larger chunk still grows it."""
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._buffer: torch.Tensor | None = None  # flat uint8 host buffer, reused
        self._stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._pending: tuple[torch.Tensor, torch.Tensor, object] | None = None
        #: how many times the host buffer was allocated (1 for a clip whose chunks never grow).
        self.allocations = 0
        if capacity > 0:
            self._allocate(capacity)

    def _allocate(self, n: int) -> None:
        self._buffer = None  # drop the old one first: only one buffer exists at a time
        self._buffer = torch.empty(n, dtype=torch.uint8, pin_memory=self.cuda)
        self.allocations += 1

    @property
    def pending(self) -> bool:
        return self._pending is not None

    @property
    def buffer(self) -> torch.Tensor | None:
        """The staging buffer (for tests: its ``data_ptr`` stays the same across chunks)."""
        return self._buffer

    def _staging_view(self, chunk: torch.Tensor) -> torch.Tensor:
        n = chunk.numel()
        if self._buffer is None or self._buffer.numel() < n:
            self._allocate(n)
        return self._buffer[:n].view(chunk.shape)

    def submit(self, chunk: torch.Tensor) -> None:
        """Start copying ``chunk`` (uint8, contiguous, on this stager's device) to the host."""
        if self._pending is not None:
            raise RuntimeError("collect() the previous chunk before submitting the next")
        if chunk.dtype != torch.uint8 or not chunk.is_contiguous():
            raise ValueError("HostStager stages contiguous uint8 chunks")
        view = self._staging_view(chunk)
        done = None
        if self.cuda:
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self._stream):
                self._stream.wait_event(ready)  # the chunk is computed on the current stream
                view.copy_(chunk, non_blocking=True)
                done = torch.cuda.Event()
                done.record(self._stream)
        else:
            view.copy_(chunk)
        # ``chunk`` stays referenced until collected, so the caching allocator cannot hand its
        # device memory to the next decode while the side stream still reads it.
        self._pending = (chunk, view, done)

    def collect(self) -> torch.Tensor:
        """Wait for the submitted copy and return the chunk as a host tensor the caller owns."""
        if self._pending is None:
            raise RuntimeError("nothing submitted")
        chunk, view, done = self._pending
        self._pending = None
        if done is not None:
            done.synchronize()
        del chunk
        owned = torch.empty(view.shape, dtype=torch.uint8)
        owned.copy_(view)
        return owned
