"""Owning an output: one run per video file, checked before any expensive work starts.

Why: a render is an hour of denoising followed by a decode that writes several files next to the
video (the latent checkpoint ``clip.latents.safetensors``, the partial stream
``clip.mp4.partial.ts``, the final ``clip.mp4``). Two runs that name the same ``--out`` would
share those files: one would report success for the other's frames, and one's "latents are
kept" would point at a file the other deleted. A previous failed run's kept latents would be
silently replaced. And a read-only or full directory would be discovered only after the
denoising, when the checkpoint cannot be written.

:class:`OutputClaim` settles all of that up front:

* **Exclusive.** It takes an advisory lock (``fcntl.flock``; ``msvcrt.locking`` on Windows) on a
  lock file beside the video, ``clip.mp4.lock``, which records who holds it (pid, host, start
  time, command). A second claim of the same video fails at once with :class:`OutputInUse`,
  naming the holder. The kernel drops the lock when its process dies, even by SIGKILL, so a
  crashed run never blocks the next one. Within one process the claim is re-entrant (``render``
  claims, then the writer takes the same lock again: :class:`OutputLock`, which a
  :class:`~vidmem.io.writer.VideoWriter` used on its own takes too).
* **Nothing replaced unasked.** An existing video, kept latents, or a partial stream from an
  earlier run are refused (:class:`OutputExists`, naming each file and, for latents, the
  ``vidmem decode`` command that resumes them) unless ``overwrite=True``. A resume
  (``resume=True``, what ``vidmem decode`` does) may replace its own video's partial stream.
* **Writable, with room.** The directory is probed by creating a file in it, and when the size
  of what will be written first is known (the latent checkpoint), the free space is checked and,
  on Linux, reserved with ``posix_fallocate`` until the checkpoint is written
  (:meth:`OutputClaim.release_reservation`), so a disk that fills during the denoising cannot
  take the checkpoint's room.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Headroom required beyond the checkpoint's own bytes (safetensors header, metadata, and the
#: first chunks of the video): a directory with less free space is refused before denoising.
FREE_SPACE_MARGIN_BYTES = 16 << 20


class OutputError(OSError):
    """The output cannot be written as asked; the message says why and what to do."""


class OutputInUse(OutputError):
    """Another run (process) is writing the same video."""


class OutputExists(OutputError):
    """Files of an earlier run are in the way (pass ``overwrite=True`` / ``--overwrite``)."""


@dataclass(frozen=True)
class OutputFiles:
    """Every file a render of ``video`` writes, by name."""

    video: Path

    @property
    def latents(self) -> Path:
        """The latent checkpoint: ``clip.mp4`` -> ``clip.latents.safetensors``."""
        return self.video.with_name(self.video.stem + ".latents.safetensors")

    @property
    def lock(self) -> Path:
        return self.video.with_name(self.video.name + ".lock")

    @property
    def reservation(self) -> Path:
        return self.latents.with_name(self.latents.name + ".reserved")

    def partials(self) -> list[Path]:
        """Partial streams of this video that exist (``clip.mp4.partial.ts`` / ``.ivf``)."""
        return sorted(p for p in self.video.parent.glob(self.video.name + ".partial.*")
                      if p.suffix in (".ts", ".ivf"))


def check_video_path(path: str | os.PathLike | None) -> Path:
    """The output path as a :class:`Path`, refused early when it cannot name an MP4."""
    if path is None or str(path).strip() == "":
        raise ValueError("the output path is empty; name an .mp4 file, e.g. --out clip.mp4")
    out = Path(path)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"output path {str(out)!r} must end in .mp4")
    if not out.parent.exists():
        raise FileNotFoundError(f"output directory {str(out.parent)!r} does not exist; create it "
                                f"first")
    if out.is_dir():
        raise IsADirectoryError(f"output path {str(out)!r} is a directory; name an .mp4 file")
    return out


def resume_command(latents: str | os.PathLike, video: str | os.PathLike,
                   flags: list[str] | None = None) -> str:
    """The ``vidmem decode`` command line that resumes a render from its kept latents."""
    return shlex.join(["vidmem", "decode", str(latents), "--out", str(video), *(flags or [])])


def frames_in_partial(path: Path) -> int:
    """How many frames of a partial stream play (0 if it is unreadable)."""
    import av

    try:
        fmt = "ivf" if path.suffix == ".ivf" else "mpegts"
        with av.open(str(path), format=fmt) as src:
            return sum(1 for p in src.demux(src.streams.video[0]) if p.pts is not None)
    except Exception:  # noqa: BLE001 - a damaged partial simply plays nothing
        return 0


# --- locking ----------------------------------------------------------------------------------
_held: dict[Path, "_Lock"] = {}  # this process's claims, by resolved lock path (re-entrancy)
_held_guard = threading.Lock()


class _Lock:
    """An exclusive advisory lock on a file, held by this process until released."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self.thread = threading.get_ident()
        self._fd: int | None = None

    def acquire(self, holder_info: dict[str, Any]) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _try_lock(fd):
                    raise OutputInUse(self._busy_message(fd))
                # The previous holder may have unlinked the file between our open and our lock:
                # then we locked an orphan; start again on the current file.
                if _same_file(fd, self.path):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder_info) + "\n").encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:  # unlink while still holding the lock: a waiting claimant re-checks the inode
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)  # closing drops the lock
        self._fd = None

    def _busy_message(self, fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (OSError, ValueError):
            info = {}
        who = (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
               if info else "another process")
        command = f": {info['command']}" if info.get("command") else ""
        video = self.path.name.removesuffix(".lock")
        return (f"{video} is being written by another vidmem run ({who}{command}); wait for it "
                f"to finish or choose another output")


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock without waiting; ``False`` if another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:  # a filesystem without locks (some network mounts): cannot exclude others
        return True


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


class OutputLock:
    """This process's exclusive hold on ``video`` (the lock file :class:`OutputClaim` takes,
    without its checks): what :class:`~vidmem.io.writer.VideoWriter` takes, so two processes
    never write one file even when neither goes through ``render``. Re-entrant within the
    thread that holds it; another process (or thread) gets :class:`OutputInUse`."""

    def __init__(self, video: str | os.PathLike):
        self.files = OutputFiles(Path(video))
        self._lock: _Lock | None = None

    @property
    def holds(self) -> int:
        """How many holds this process has on the video (0: none by this object)."""
        return self._lock.count if self._lock is not None else 0

    def acquire(self) -> OutputLock:
        key = self.files.lock.resolve()
        with _held_guard:
            lock = _held.get(key)
            if lock is not None and lock.thread != threading.get_ident():
                raise OutputInUse(f"{self.files.video.name} is being written by another thread "
                                  f"of this process; wait for it to finish or choose another "
                                  f"output")
            if lock is None:
                lock = _Lock(self.files.lock)
                try:
                    lock.acquire(_holder_info())
                except PermissionError as e:
                    raise OutputError(f"cannot write in {str(self.files.video.parent)!r} "
                                      f"({e.strerror}); choose a writable directory") from None
                _held[key] = lock
            lock.count += 1
            self._lock = lock
        return self

    def release(self) -> None:
        """Give up this hold (the process's last release drops the lock)."""
        if self._lock is None:
            return
        key = self.files.lock.resolve()
        with _held_guard:
            lock, self._lock = self._lock, None
            lock.count -= 1
            if lock.count == 0:
                lock.release()
                _held.pop(key, None)


class OutputClaim:
    """This run's ownership of a video and its side files; see the module docstring.

    Use as a context manager (or call :meth:`acquire` / :meth:`release`)::

        with OutputClaim("clip.mp4", checkpoint_bytes=latents_nbytes) as claim:
            ...  # denoise, claim.release_reservation(), save the checkpoint, decode, write

    ``overwrite``: replace an existing video, kept latents and partial streams.
    ``resume``: this run decodes kept latents into the video (``vidmem decode``): a partial
    stream of the video is replaced (it is this video's own unfinished attempt), and the kept
    latents are read, not refused.
    ``checkpoint_bytes``: the size of the latent checkpoint that will be written, to check (and
    reserve) the free space before the expensive work.
    """

    def __init__(self, video: str | os.PathLike, *, overwrite: bool = False,
                 resume: bool = False, checkpoint_bytes: int | None = None):
        self.files = OutputFiles(check_video_path(video))
        self.overwrite = overwrite
        self.resume = resume
        self.checkpoint_bytes = checkpoint_bytes
        self._lock: OutputLock | None = None
        #: a partial stream of an earlier run that this run replaces (reported by the caller).
        self.replaced_partials: list[tuple[Path, int]] = []

    @property
    def video(self) -> Path:
        return self.files.video

    def acquire(self) -> OutputClaim:
        self._lock = OutputLock(self.video).acquire()
        try:
            self._check_existing()
            self._check_writable()
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Give up the claim (the last release of this process drops the lock)."""
        self.release_reservation()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def release_reservation(self) -> None:
        """Free the space held for the checkpoint (call right before writing it)."""
        try:
            self.files.reservation.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> OutputClaim:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # --- checks ----------------------------------------------------------------------------
    def _check_existing(self) -> None:
        files = self.files
        if self._lock is not None and self._lock.holds > 1:
            return  # this process already claimed (and checked) the video
        problems = []
        if files.video.exists() and not self.overwrite:
            problems.append(f"{files.video} already exists")
        if files.latents.exists() and not (self.overwrite or self.resume):
            problems.append(f"an earlier run kept its latents at {files.latents} (resume with "
                            f"`{resume_command(files.latents, files.video)}`)")
        for partial in files.partials():
            frames = frames_in_partial(partial)
            if self.overwrite or self.resume:
                self.replaced_partials.append((partial, frames))
            else:
                problems.append(f"an earlier run left a partial stream {partial} ({frames} "
                                f"frames play)")
        if problems:
            raise OutputExists("; ".join(problems) + "; pass --overwrite (overwrite=True) to "
                               "replace, or choose another output")
        for partial, _ in self.replaced_partials:
            partial.unlink(missing_ok=True)

    def _check_writable(self) -> None:
        directory = self.video.parent
        try:
            fd, probe = tempfile.mkstemp(dir=directory, prefix=".vidmem-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise OutputError(f"cannot write in {str(directory)!r} ({e.strerror or e}); choose a "
                              f"writable directory for the output") from None
        if not self.checkpoint_bytes:
            return
        need = self.checkpoint_bytes + FREE_SPACE_MARGIN_BYTES
        free = shutil.disk_usage(directory).free
        if free < need:
            from .memory import format_bytes

            raise OutputError(f"only {format_bytes(free)} free in {str(directory)!r}; the latent "
                              f"checkpoint alone needs {format_bytes(need)}: free some space or "
                              f"choose another output directory")
        if hasattr(os, "posix_fallocate"):
            try:
                fd = os.open(self.files.reservation, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.posix_fallocate(fd, 0, self.checkpoint_bytes)
                finally:
                    os.close(fd)
            except OSError:  # filesystems without fallocate: the free-space check stands
                self.release_reservation()
