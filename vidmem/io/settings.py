"""How a video is written, as one typed, validated value: :class:`WriterSettings`.

Why a value: the frame rate, codec and quality settings are decided once (from the command line,
the caller, or a checkpoint being resumed) and must reach the writer of every clip unchanged, and
be refused before the denoising, not when the first chunk is encoded. Building a
:class:`WriterSettings` checks every field the writer would otherwise refuse later (the codec
against this PyAV build's encoders too); :class:`vidmem.VideoWriter` takes one.

The codec tables (which encoder serves a codec, its default quality) live here too, so the
settings and the writer read the same facts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

from ..errors import InvalidOptions
from ..values import with_given

#: the highest frame rate vidmem writes: the partial MPEG-TS stream stamps frames on a 90 kHz
#: clock, and no H.264/H.265 level or player goes anywhere near this.
MAX_FPS = 1000

#: codec name -> encoder candidates, best first.
CODECS: dict[str, tuple[str, ...]] = {
    "h264": ("libx264", "h264"),
    "h265": ("libx265", "hevc"),
    "hevc": ("libx265", "hevc"),
    "av1": ("libsvtav1", "libaom-av1", "librav1e", "av1"),
}
#: default quality per encoder (constant rate factor); documented in VideoWriter.
DEFAULT_CRF = {"libx264": 18, "libx265": 22, "libsvtav1": 30, "libaom-av1": 30, "librav1e": 30}
DEFAULT_PRESET = {"libx264": "fast", "libx265": "fast", "libsvtav1": "8"}
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v")

#: NTSC rates people write as decimals, mapped to their exact rational value.
_NTSC = {23.976: Fraction(24000, 1001), 29.97: Fraction(30000, 1001),
         47.952: Fraction(48000, 1001), 59.94: Fraction(60000, 1001),
         119.88: Fraction(120000, 1001)}


def exact_fps(fps: float | int | Fraction | str) -> Fraction:
    """fps as an exact fraction: 23.976 -> 24000/1001, 16 -> 16, "30000/1001" -> 30000/1001."""
    try:
        if isinstance(fps, str):
            rate = Fraction(fps)
        elif isinstance(fps, Fraction):
            rate = fps
        elif isinstance(fps, float):
            if not math.isfinite(fps):
                raise ValueError
            rate = next((v for k, v in _NTSC.items() if abs(fps - k) < 5e-4), None) \
                or Fraction(fps).limit_denominator(1001)
        else:
            rate = Fraction(int(fps))
    except (ValueError, ZeroDivisionError, TypeError):
        raise InvalidOptions(f"fps must be a positive number, got {fps!r}") from None
    if rate <= 0:
        raise InvalidOptions(f"fps must be positive, got {fps!r}")
    if rate > MAX_FPS:
        raise InvalidOptions(f"fps must be at most {MAX_FPS} (the partial stream's 90 kHz clock "
                             f"and the encoders' levels), got {fps!r}")
    return rate


def available_encoders() -> dict[str, str]:
    """Codec name -> the encoder this PyAV build would use for it (only those that exist)."""
    found = {}
    for name, candidates in CODECS.items():
        for enc in candidates:
            try:
                av.Codec(enc, "w")
            except Exception:  # noqa: BLE001 - PyAV raises several types for "no such codec"
                continue
            found[name] = enc
            break
    return found


def key_is_av1(encoder: str) -> bool:
    return encoder in CODECS["av1"]



@dataclass(frozen=True)
class WriterSettings:
    """The MP4's settings (see :class:`vidmem.VideoWriter` for what each does).

    ``fps``: frames per second (``None``: the pipeline family's own rate, decided by the render;
    a writer needs a number). ``codec``: ``"h264"``, ``"h265"``/``"hevc"`` or ``"av1"``.
    ``crf`` (0-63) and ``preset``: quality and speed (default: the encoder's, e.g. crf 18 for
    x264). ``lossless``: frames decode to exactly the uint8 values written (libx264rgb qp 0;
    ``codec`` and ``crf`` are then unused). ``queue_size``: chunks that may wait for the encoder.
    ``options``: extra FFmpeg encoder options. ``flush_after``: seconds without input before the
    encoder is drained so every chunk so far is on disk.
    """

    fps: float | Fraction | None = None
    codec: str = "h264"
    crf: int | None = None
    preset: str | None = None
    lossless: bool = False
    queue_size: int = 2
    options: dict[str, str] = field(default_factory=dict, hash=False)
    flush_after: float = 0.5

    def __post_init__(self) -> None:
        if self.fps is not None:
            exact_fps(self.fps)
        if not isinstance(self.queue_size, int) or isinstance(self.queue_size, bool) \
                or self.queue_size < 1:
            raise InvalidOptions(f"queue_size must be at least 1, got {self.queue_size!r}")
        if self.crf is not None and (not isinstance(self.crf, int) or isinstance(self.crf, bool)
                                     or not 0 <= self.crf <= 63):
            raise InvalidOptions(f"crf must be a whole number from 0 to 63, got {self.crf!r}")
        if self.preset is not None and not isinstance(self.preset, str):
            raise InvalidOptions(f"preset must be a string such as 'fast', got {self.preset!r}")
        if not isinstance(self.options, dict):
            raise InvalidOptions(f"options must be a dict of encoder options, got "
                                 f"{self.options!r}")
        if not isinstance(self.lossless, bool):
            raise InvalidOptions(f"lossless must be True or False, got {self.lossless!r}")
        if not (isinstance(self.flush_after, (int, float)) and self.flush_after >= 0):
            raise InvalidOptions(f"flush_after must be a non-negative number of seconds, got "
                                 f"{self.flush_after!r}")
        if not self.lossless:
            self.encoder  # an unknown or unavailable codec fails now

    @property
    def rate(self) -> Fraction:
        """The exact frame rate (23.976 -> 24000/1001); needs ``fps``."""
        if self.fps is None:
            raise InvalidOptions("the writer needs a frame rate: give fps")
        return exact_fps(self.fps)

    @property
    def encoder(self) -> str:
        """The FFmpeg encoder these settings use."""
        if self.lossless:
            return "libx264rgb"
        encoders = available_encoders()
        key = str(self.codec).lower()
        if key not in CODECS:
            raise InvalidOptions(f"unknown codec {self.codec!r}; available: "
                                 f"{', '.join(sorted(encoders))}")
        if key not in encoders:
            raise InvalidOptions(f"codec {self.codec!r} has no encoder in this PyAV build; "
                                 f"available: {', '.join(sorted(encoders))}")
        return encoders[key]

    # --- building ------------------------------------------------------------------------------
    def with_(self, **changes: Any) -> WriterSettings:
        """A copy with ``changes`` applied where they are not ``None`` (keyword shortcuts)."""
        return with_given(self, changes, "writer setting(s)")

    @classmethod
    def build(cls, base: WriterSettings | None = None, *, lossless: bool | None = None,
              **shortcuts: Any) -> WriterSettings:
        """``base`` (default: all defaults) with the shortcuts that are not ``None`` (``lossless``
        only when ``True``: ``False`` is every keyword API's default, not a request)."""
        if base is not None and not isinstance(base, WriterSettings):
            raise InvalidOptions(f"writer must be a vidmem.WriterSettings, got "
                                 f"{type(base).__name__}")
        return (base or cls()).with_(lossless=lossless or None, **shortcuts)

    # --- persisted and repeated ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the latent checkpoint records it); ``fps`` as ``"num/den"`` when fractional."""
        data = dataclasses.asdict(self)
        if isinstance(self.fps, Fraction):
            data["fps"] = str(self.fps)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WriterSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if isinstance(values.get("fps"), str):
            values["fps"] = Fraction(values["fps"])
        return cls(**values)

    def cli_flags(self) -> list[str]:
        """The ``vidmem render`` / ``vidmem decode`` flags that give these settings (the CLI has
        flags for ``fps`` and ``lossless``; other fields are the API's)."""
        flags: list[str] = []
        if self.fps is not None:
            fps = self.fps
            flags += ["--fps", f"{float(fps):g}" if isinstance(fps, float) else str(fps)]
        if self.lossless:
            flags.append("--lossless")
        return flags
