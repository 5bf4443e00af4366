"""A clip's files, by name, and the one lock implementation that guards them.

Why one module: a render of ``clip.mp4`` writes several files beside it (the latent checkpoint,
the partial stream, the lock, a space reservation), and the render, the writer, the batch, the
resume and the claim's checks must all agree on what they are called. :class:`ClipFiles` is the
only place that names them. :class:`FileLock` is the only place that takes an advisory lock on a
file; the output lock (:class:`OutputLock`, one writer per video) and the batch manifest's lock
are both made of it.

This module imports nothing of vidmem's but :mod:`vidmem.errors`, so the writer (``vidmem.io``)
takes its lock from here without depending on the checks of :mod:`vidmem.outputs`.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OutputError, OutputInUse

#: the partial stream's container per suffix: MPEG-TS for H.264/H.265, IVF for AV1.
PARTIAL_FORMATS = {"mpegts": ".ts", "ivf": ".ivf"}


@dataclass(frozen=True)
class ClipFiles:
    """Every file a render of ``video`` writes, by name."""

    video: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "video", Path(self.video))

    @property
    def latents(self) -> Path:
        """The latent checkpoint: ``clip.mp4`` -> ``clip.latents.safetensors``."""
        return self.video.with_name(self.video.stem + ".latents.safetensors")

    @property
    def lock(self) -> Path:
        """The output lock: ``clip.mp4.lock``."""
        return self.video.with_name(self.video.name + ".lock")

    @property
    def reservation(self) -> Path:
        """The disk space held for the checkpoint until it is written."""
        return self.latents.with_name(self.latents.name + ".reserved")

    def partial(self, container: str = "mpegts") -> Path:
        """The partial stream the writer appends to: ``clip.mp4.partial.ts`` (``.ivf`` for AV1)."""
        return self.video.with_name(self.video.name + ".partial" + PARTIAL_FORMATS[container])

    def partials(self) -> list[Path]:
        """Partial streams of this video that exist."""
        suffixes = set(PARTIAL_FORMATS.values())
        return sorted(p for p in self.video.parent.glob(self.video.name + ".partial.*")
                      if p.suffix in suffixes)


def resume_command(latents: str | os.PathLike, video: str | os.PathLike,
                   flags: list[str] | None = None) -> str:
    """The ``vidmem decode`` command line that resumes a render from its kept latents."""
    return shlex.join(["vidmem", "decode", str(latents), "--out", str(video), *(flags or [])])


# --- the lock ------------------------------------------------------------------------------------
class FileLock:
    """An exclusive advisory lock on ``path`` (``fcntl.flock``; ``msvcrt.locking`` on Windows),
    held by this process until :meth:`release` or its death (even by SIGKILL: the kernel drops
    it). ``blocking``: wait for the holder instead of failing at once.

    ``acquire`` returns ``False`` (non-blocking) when another process holds it. A file that the
    previous holder unlinked between our open and our lock is noticed and the lock retaken on
    the current file. ``info`` is written into the file for whoever finds it held.
    """

    def __init__(self, path: Path, *, blocking: bool = False, remove_on_release: bool = True):
        self.path = Path(path)
        self.blocking = blocking
        self.remove_on_release = remove_on_release
        self._fd: int | None = None
        self._holder: dict[str, Any] = {}  # what the holder wrote, after a failed acquire

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, info: dict[str, Any] | None = None) -> bool:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _lock_fd(fd, self.blocking):
                    self._holder = _read_info(fd)
                    os.close(fd)
                    return False
                if _same_file(fd, self.path):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # we locked an orphan: start again on the current file
        if info is not None:
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd
        return True

    def holder(self) -> dict[str, Any]:
        """What the process holding the lock wrote (after a failed non-blocking acquire)."""
        return self._holder

    def release(self) -> None:
        if self._fd is None:
            return
        if self.remove_on_release:
            try:  # unlink while still holding the lock: a waiting claimant re-checks the inode
                self.path.unlink()
            except OSError:
                pass
        os.close(self._fd)  # closing drops the lock
        self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _lock_fd(fd: int, blocking: bool) -> bool:
    """Take an exclusive lock on ``fd``; ``False`` if another process holds it (non-blocking)."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False
    except OSError:  # a filesystem without locks (some network mounts): cannot exclude others
        return True


def _read_info(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _holder_info() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
            if sys.argv and sys.argv[0] else ""}


class _Hold:
    """This process's lock on one video, shared by its re-entrant holds."""

    def __init__(self, lock: FileLock):
        self.lock = lock
        self.count = 0
        self.thread = threading.get_ident()


_held: dict[Path, _Hold] = {}  # this process's holds, by resolved lock path (re-entrancy)
_held_guard = threading.Lock()


class OutputLock:
    """This process's exclusive hold on ``video`` (``clip.mp4.lock``): two processes never write
    one file. Re-entrant within the thread that holds it (a render holds it, and the writer it
    hands it to holds it again); another process (or thread) gets :class:`OutputInUse`, naming
    the holder."""

    def __init__(self, video: str | os.PathLike):
        self.files = ClipFiles(Path(video))
        self._hold: _Hold | None = None

    @property
    def holds(self) -> int:
        """How many holds this process has on the video (0: none by this object)."""
        return self._hold.count if self._hold is not None else 0

    def acquire(self) -> OutputLock:
        key = self.files.lock.resolve()
        with _held_guard:
            hold = _held.get(key)
            if hold is not None and hold.thread != threading.get_ident():
                raise OutputInUse(f"{self.files.video.name} is being written by another thread "
                                  f"of this process; wait for it to finish or choose another "
                                  f"output")
            if hold is None:
                lock = FileLock(self.files.lock)
                try:
                    acquired = lock.acquire(_holder_info())
                except PermissionError as e:
                    raise OutputError(f"cannot write in {str(self.files.video.parent)!r} "
                                      f"({e.strerror}); choose a writable directory") from None
                if not acquired:
                    raise OutputInUse(_busy_message(self.files.video, lock.holder()))
                hold = _held[key] = _Hold(lock)
            hold.count += 1
            self._hold = hold
        return self

    def again(self) -> OutputLock:
        """Another hold of the same video by this thread (what a writer given this lock takes,
        so each releases its own)."""
        return OutputLock(self.files.video).acquire()

    def release(self) -> None:
        """Give up this hold (the process's last release drops the lock)."""
        if self._hold is None:
            return
        key = self.files.lock.resolve()
        with _held_guard:
            hold, self._hold = self._hold, None
            hold.count -= 1
            if hold.count == 0:
                hold.lock.release()
                _held.pop(key, None)


def _busy_message(video: Path, info: dict[str, Any]) -> str:
    who = (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
           if info else "another process")
    command = f": {info['command']}" if info.get("command") else ""
    return (f"{video.name} is being written by another vidmem run ({who}{command}); wait for it "
            f"to finish or choose another output")
