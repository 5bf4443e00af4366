"""Every exception vidmem raises to a caller, under one root: :class:`VidmemError`.

Why one root: a caller (or the ``vidmem`` command line) must be able to tell "vidmem refused
this, and says why" from "something broke". Each class also derives from the builtin it stands
for (``InvalidOptions`` is a ``ValueError``, ``OutputError`` an ``OSError``, ...), so code that
caught the builtin before keeps working.

Two families, which the CLI maps to its exit status (:data:`vidmem.cli.errors.EXIT_STATUS`):

* **Something the user can fix** (status 2): :class:`InvalidOptions`, :class:`InvalidInput`,
  :class:`UnsupportedModel`, :class:`ModelNotFound`, :class:`OutputError` (and
  :class:`OutputInUse`, :class:`OutputExists`), :class:`CheckpointError`
  (:class:`CheckpointDamaged`), :class:`PromptsFileError`, :class:`BudgetTooSmall`.
* **The run failed** (status 1): :class:`DecodeFailed`, :class:`WriterError`,
  :class:`RankFailed`, :class:`GroupBroken`.

:class:`DecodeInterrupted` is the one exception: it is a ``KeyboardInterrupt`` (Ctrl-C must never
be swallowed by an ``except Exception``, vidmem's own or the caller's), carrying what
:class:`DecodeFailed` carries. It shares :class:`IncompleteVideo` with it.

This module imports nothing of vidmem's, so every module may raise from it.
"""

from __future__ import annotations

from pathlib import Path


class VidmemError(Exception):
    """The root of every exception vidmem raises on purpose; the message says what to do."""


# --- what the user can fix --------------------------------------------------------------------
class InvalidOptions(VidmemError, ValueError):
    """An option value, or a combination of them, that vidmem refuses (checked before any work)."""


class InvalidInput(VidmemError, ValueError):
    """Data given to vidmem (latents, frames, images, samples) that cannot be used as given:
    wrong shape or dtype, NaN/inf values, sizes that do not match."""


class InvalidInputType(InvalidInput, TypeError):
    """:class:`InvalidInput` of the wrong type (a list where a tensor is needed, ints where floats
    are, ...)."""


class UnsupportedModel(VidmemError, ValueError):
    """A pipeline or VAE vidmem cannot render or decode; the message names what it supports."""


class ModelNotFound(VidmemError, FileNotFoundError):
    """A model directory or hub id that cannot be loaded (missing, incomplete)."""


class ModelUnreachable(ModelNotFound, ConnectionError):
    """A hub id that cannot be reached (offline, or no such repository)."""


class BudgetTooSmall(InvalidOptions):
    """A memory budget no plan fits; the message names the smallest budget that works."""


class OutputError(VidmemError, OSError):
    """The output cannot be written as asked; the message says why and what to do."""


class OutputDirectoryMissing(OutputError, FileNotFoundError):
    """The output's directory does not exist (vidmem never creates it for one clip)."""


class OutputInUse(OutputError):
    """Another run (process or thread) is writing the same video."""


class OutputExists(OutputError):
    """Files of an earlier run are in the way (pass ``overwrite=True`` / ``--overwrite``)."""


class CheckpointError(VidmemError, ValueError):
    """A latent checkpoint that cannot be used: missing, not a vidmem checkpoint, or damaged."""


class CheckpointMissing(CheckpointError, FileNotFoundError):
    """No checkpoint at the path given."""


class CheckpointDamaged(CheckpointError):
    """The checkpoint's bytes no longer match what was written (or its latents are not finite)."""


class PromptsFileError(VidmemError, ValueError):
    """A problem in a batch's prompts file; the message names the file and line."""


# --- the run failed -----------------------------------------------------------------------------
class WriterError(VidmemError, RuntimeError):
    """Encoding or muxing failed on the writer's thread (the original error is ``__cause__``)."""


class RankFailed(VidmemError, RuntimeError):
    """A rank of a split job failed; every rank of the job raises this, with the same message.

    ``failures``: ``[(rank, "Type: message"), ...]`` for each rank that reported an error. On the
    rank that failed, the original exception is the ``__cause__``.
    """

    def __init__(self, failures: list[tuple[int, str]]):
        self.failures = failures
        self.ranks = [rank for rank, _ in failures]
        super().__init__("; ".join(f"rank {rank} failed: {message}" for rank, message in failures))


class GroupBroken(VidmemError, RuntimeError):
    """The process group stopped working (a collective timed out or a peer went away): no further
    collective can succeed, so nothing more is attempted on it."""


class IncompleteVideo:
    """What a failed or interrupted decode leaves behind, and how to finish it (the attributes
    of :class:`DecodeFailed` and :class:`DecodeInterrupted`)."""

    reason: str
    stage: str
    partial: Path | None
    frames_played: int
    checkpoint: Path | None
    resume: str | None

    def _set_incomplete(self, *, stage: str, partial: Path | None, frames_played: int,
                        checkpoint: Path | None = None, resume: str | None = None,
                        reason: str | None = None) -> None:
        #: what went wrong, in one clause (the message adds what was kept).
        self.reason = reason or str(self).split("; ")[0]
        #: ``"decode"`` or ``"write"``: which side failed.
        self.stage = stage
        #: the partial stream of the completed chunks (plays ``frames_played`` frames).
        self.partial = partial
        self.frames_played = frames_played
        #: the kept latent checkpoint, and the command that resumes from it.
        self.checkpoint = checkpoint
        self.resume = resume


class DecodeFailed(IncompleteVideo, VidmemError, RuntimeError):
    """The decode or the write failed; what was kept is in the attributes (and the message):
    ``checkpoint`` (the latents, after a render), ``partial`` / ``frames_played``, ``resume``."""

    def __init__(self, message: str, checkpoint: Path | None = None, *, stage: str = "decode",
                 partial: Path | None = None, frames_played: int = 0,
                 resume: str | None = None, reason: str | None = None):
        super().__init__(message)
        self._set_incomplete(stage=stage, partial=partial, frames_played=frames_played,
                             checkpoint=checkpoint, resume=resume, reason=reason)


class DecodeInterrupted(IncompleteVideo, KeyboardInterrupt):
    """Ctrl-C (SIGINT) during the decode: still a ``KeyboardInterrupt`` (never caught by an
    ``except Exception``), carrying what was kept (see :class:`DecodeFailed`) so the command line
    can say how to resume."""

    def __init__(self, message: str, checkpoint: Path | None = None, *,
                 partial: Path | None = None, frames_played: int = 0, resume: str | None = None,
                 reason: str | None = None, stage: str = "decode"):
        super().__init__(message)
        self._set_incomplete(stage=stage, partial=partial, frames_played=frames_played,
                             checkpoint=checkpoint, resume=resume, reason=reason)


#: every public exception class, for ``vidmem``'s exports and the tests.
PUBLIC_ERRORS = (
    VidmemError, InvalidOptions, InvalidInput, InvalidInputType, UnsupportedModel, ModelNotFound,
    ModelUnreachable, BudgetTooSmall, OutputError, OutputDirectoryMissing, OutputInUse,
    OutputExists, CheckpointError, CheckpointMissing, CheckpointDamaged, PromptsFileError,
    WriterError, RankFailed, GroupBroken, DecodeFailed, DecodeInterrupted,
)
