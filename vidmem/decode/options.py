"""How a clip is decoded, as one typed, validated value: :class:`DecodeOptions`.

Why a value and not keywords: the same five or six decode settings travel from the command line
(or the caller) through the render, the batch, the planner, the out-of-memory fallback, the
checkpoint and the resume command. As loose keywords each hop could drop one (a batch once lost
``--whole-clip-norm`` on the way to its clips); as one frozen value they arrive together, checked
once, and are written into the checkpoint so a resume decodes exactly as the render would have.

What depends on the VAE (a tile below the family's minimum, whole-clip statistics for a VAE that
has none) is checked by :func:`vidmem.plan_decode`, which knows the VAE; everything else is
checked here, when the value is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Union

from ..errors import InvalidOptions
from ..values import with_given

#: ``whole_clip_norm`` values: ``None`` the family's default, ``True`` / ``"estimate"`` one
#: statistics pass, ``"exact"`` one per norm, ``False`` cross-faded windows.
WholeClipNorm = Union[bool, Literal["estimate", "exact"], None]
WHOLE_CLIP_NORM_VALUES = (None, True, False, "estimate", "exact")

#: ``--whole-clip-norm`` words and the values they stand for.
WHOLE_CLIP_NORM_FLAGS = {"auto": None, "on": True, "off": False, "exact": "exact"}


@dataclass(frozen=True)
class DecodeOptions:
    """The decode's settings; sizes in pixels and pixel frames (see :func:`vidmem.plan_decode`).

    ``chunk_frames``: new frames per temporal chunk (default 16). ``overlap_frames``: frames of
    temporal context re-decoded by each window of a non-causal family (default: the family's).
    ``tile_size`` / ``tile_overlap``: spatial tile edge (``0``: no tiling; ``None``: chosen from
    the frame size and free device memory) and least overlap (default 64, or a quarter of a
    smaller tile). ``whole_clip_norm``: whole-clip GroupNorm statistics for decoders whose norms
    span the clip (HunyuanVideo; ``None``: the family's default). ``oom_fallback``: on an
    out-of-memory error retry with smaller chunks, then smaller tiles. ``memory_breakdown``:
    profile the decode's host memory into the report.
    """

    chunk_frames: int | None = None
    overlap_frames: int | None = None
    tile_size: int | None = None
    tile_overlap: int | None = None
    whole_clip_norm: WholeClipNorm = None
    oom_fallback: bool = True
    memory_breakdown: bool = False

    def __post_init__(self) -> None:
        for name in ("chunk_frames", "overlap_frames", "tile_size", "tile_overlap"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 0):
                raise InvalidOptions(f"{name} must be a non-negative integer, got {value!r}")
        if self.chunk_frames == 0:
            raise InvalidOptions("chunk_frames must be at least 1 pixel frame")
        if not any(self.whole_clip_norm is v or self.whole_clip_norm == v and
                   type(self.whole_clip_norm) is type(v) for v in WHOLE_CLIP_NORM_VALUES):
            raise InvalidOptions(f"whole_clip_norm must be True, False, 'estimate', 'exact' or "
                                 f"None; got {self.whole_clip_norm!r}")
        for name in ("oom_fallback", "memory_breakdown"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidOptions(f"{name} must be True or False, got "
                                     f"{getattr(self, name)!r}")

    # --- building ------------------------------------------------------------------------------
    def with_(self, **changes: Any) -> DecodeOptions:
        """A copy with ``changes`` applied where they are not ``None`` (keyword shortcuts over a
        base value: ``render(..., decode_options=opts, tile_size=64)``)."""
        return with_given(self, changes, "decode option(s)")

    @classmethod
    def build(cls, base: DecodeOptions | None = None, **shortcuts: Any) -> DecodeOptions:
        """``base`` (default: all defaults) with the keyword shortcuts that are not ``None``."""
        if base is not None and not isinstance(base, DecodeOptions):
            raise InvalidOptions(f"decode must be a vidmem.DecodeOptions, got "
                                 f"{type(base).__name__}")
        return (base or cls()).with_(**shortcuts)

    # --- the tiling arguments of plan_decode / decode_latents ---------------------------------
    def tiling(self) -> dict[str, Any]:
        """The settings that shape the decode plan, as keywords."""
        return dict(chunk_frames=self.chunk_frames, overlap_frames=self.overlap_frames,
                    tile_size=self.tile_size, tile_overlap=self.tile_overlap,
                    whole_clip_norm=self.whole_clip_norm)

    # --- persisted and repeated ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the latent checkpoint records it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecodeOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def cli_flags(self) -> list[str]:
        """The ``vidmem render`` / ``vidmem decode`` flags that give these settings."""
        flags: list[str] = []
        if self.whole_clip_norm is not None:
            word = {True: "on", False: "off", "estimate": "on"}.get(self.whole_clip_norm,
                                                                     str(self.whole_clip_norm))
            flags += ["--whole-clip-norm", word]
        for name in ("chunk_frames", "overlap_frames", "tile_size", "tile_overlap"):
            value = getattr(self, name)
            if value is not None:
                flags += [f"--{name.replace('_', '-')}", str(value)]
        if self.memory_breakdown:
            flags.append("--memory-breakdown")
        return flags
