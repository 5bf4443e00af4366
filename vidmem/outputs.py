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

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import (InvalidOptions, OutputDirectoryMissing, OutputError, OutputExists,
                     OutputInUse)
from .files import ClipFiles, OutputLock, resume_command

__all__ = ["OutputClaim", "OutputError", "OutputExists", "OutputInUse", "check_video_path",
           "frames_in_partial"]

#: Headroom required beyond the checkpoint's own bytes (safetensors header, metadata, and the
#: first chunks of the video): a directory with less free space is refused before denoising.
FREE_SPACE_MARGIN_BYTES = 16 << 20


def check_video_path(path: str | os.PathLike | None) -> Path:
    """The output path as a :class:`Path`, refused early when it cannot name an MP4."""
    if path is None or str(path).strip() == "":
        raise InvalidOptions("the output path is empty; name an .mp4 file, e.g. --out clip.mp4")
    out = Path(path)
    if out.suffix.lower() != ".mp4":
        raise InvalidOptions(f"output path {str(out)!r} must end in .mp4")
    if not out.parent.exists():
        raise OutputDirectoryMissing(f"output directory {str(out.parent)!r} does not exist; "
                                     f"create it first")
    if out.is_dir():
        raise OutputError(f"output path {str(out)!r} is a directory; name an .mp4 file")
    return out


def frames_in_partial(path: Path) -> int:
    """How many frames of a partial stream play (0 if it is unreadable)."""
    import av

    try:
        fmt = "ivf" if path.suffix == ".ivf" else "mpegts"
        with av.open(str(path), format=fmt) as src:
            return sum(1 for p in src.demux(src.streams.video[0]) if p.pts is not None)
    except Exception:  # noqa: BLE001 - a damaged partial simply plays nothing
        return 0


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
    reserve) the free space before the expensive work. ``margin_bytes``: the room needed beyond
    it before the first chunk of video is on disk (:func:`vidmem.feasibility.disk_margin_bytes`;
    default :data:`FREE_SPACE_MARGIN_BYTES`).
    """

    def __init__(self, video: str | os.PathLike, *, overwrite: bool = False,
                 resume: bool = False, checkpoint_bytes: int | None = None,
                 margin_bytes: int | None = None):
        self.files = ClipFiles(check_video_path(video))
        self.overwrite = overwrite
        self.resume = resume
        self.checkpoint_bytes = checkpoint_bytes
        self.margin_bytes = FREE_SPACE_MARGIN_BYTES if margin_bytes is None else margin_bytes
        self._lock: OutputLock | None = None
        #: a partial stream of an earlier run that this run replaces (reported by the caller).
        self.replaced_partials: list[tuple[Path, int]] = []

    @property
    def video(self) -> Path:
        return self.files.video

    @property
    def lock(self) -> OutputLock | None:
        """The output lock while the claim is held: given to the writer, which holds it too."""
        return self._lock

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
            raise OutputExists("; ".join(problems) + "; pass overwrite=True to replace, or "
                               "choose another output")
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
        need = self.checkpoint_bytes + self.margin_bytes
        free = shutil.disk_usage(directory).free
        if free < need:
            from .memory import format_bytes  # torch: imported only on this rare path

            raise OutputError(f"only {format_bytes(free)} free in {str(directory)!r}; the latent "
                              f"checkpoint needs {format_bytes(self.checkpoint_bytes)} and the "
                              f"first chunk of video {format_bytes(self.margin_bytes)}: free "
                              f"some space or choose another output directory")
        if hasattr(os, "posix_fallocate"):
            try:
                fd = os.open(self.files.reservation, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.posix_fallocate(fd, 0, self.checkpoint_bytes)
                finally:
                    os.close(fd)
            except OSError:  # filesystems without fallocate: the free-space check stands
                self.release_reservation()
