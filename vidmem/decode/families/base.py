"""The contract between the streaming decoder and one VAE family.

Why adapters: every video VAE in diffusers has its own latent layout, temporal compression rule,
cache mechanism and decoder signature. The streaming engine (``vidmem.decode.stream``) knows none
of that; it asks the family's adapter. Adding a family means adding one module here and its tests.

Canonical layouts used between engine and adapter:

* latents: ``(B, C, T, h, w)`` (whatever the VAE's own ``decode`` takes is converted by
  :meth:`FamilyAdapter.to_canonical`);
* pixels: ``(B, 3, T, H, W)`` float, in the value range the VAE's ``decode`` returns ([-1, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from ...errors import InvalidInput
from ..geometry import Span, TimeMap, split_even

Streaming = Literal["cache", "window"]


@dataclass(frozen=True, kw_only=True)
class ClipFacts:
    """What a family adapter knows about one clip, decided when the decode is planned and kept
    in the :class:`~vidmem.decode.stream.DecodePlan` (``plan.facts``).

    Why here and not on the adapter: an adapter is made for a VAE, not for a clip. Facts that
    depend on the clip (the latents' layout and length, the whole-clip statistics choice, factors
    learned by probing) used to be set on the adapter as a side effect of planning, so anything
    that executed a plan with another adapter instance (the offload simulator builds its own)
    could decode with the wrong facts. Families with more facts subclass this.
    """

    #: how latent frames map to pixel frames for this clip.
    time_map: TimeMap
    #: pixels per latent pixel.
    spatial_factor: int
    #: ``"cache"`` or ``"window"`` streaming for this clip (HunyuanVideo: by ``clip_norm``).
    streaming: Streaming
    #: decode with whole-clip GroupNorm statistics (families that support it).
    clip_norm: bool = False
    #: index of the time axis in the native decode output (for concatenating ``"pt"`` chunks).
    native_time_axis: int = 2


@dataclass
class DecodeRun:
    """One execution of a decode plan: the plan's facts, and what an adapter keeps for the
    length of that one decode and shares between all its tiles and windows (made by the executor,
    :func:`vidmem.decode.stream.device_chunks`, through :meth:`FamilyAdapter.begin_decode`).

    ``noise_rng``: for decoders that inject noise (LTX), the RNG state captured at the decode's
    first piece, from which every piece draws (see :class:`.causal_cache.pinned_rng`).
    """

    facts: ClipFacts
    noise_rng: Any = None


class FamilyAdapter:
    """Base class; subclasses set the class attributes and implement :meth:`decode_piece`.

    ``streaming``:
      * ``"cache"``: the decoder is causal and its cache is carried from chunk to chunk (per
        spatial tile), so chunked decode equals the full decode; windows never overlap.
      * ``"window"``: no carried state; windows re-decode ``context_latents`` latents before their
        new ones, and the overlap is discarded as warm-up and/or cross-faded over ``blend_frames``.
    """

    name: ClassVar[str] = "base"
    #: diffusers class names this adapter handles (matched on ``type(vae).__name__``).
    vae_classes: ClassVar[tuple[str, ...]] = ()
    #: the frame rate this family's pipelines export at (the MP4's default when the call names
    #: none: Wan 16, CogVideoX 8, LTX 24, Mochi 30, SVD 7).
    default_fps: ClassVar[int] = 16
    streaming: ClassVar[Streaming] = "cache"
    #: whether the VAE's own decode clamps to [-1, 1] (the engine clamps after blending).
    clamps_output: ClassVar[bool] = False
    #: defaults for window families, in latent frames / pixel frames.
    default_context_latents: ClassVar[int] = 0
    default_blend_frames: ClassVar[int] = 0
    #: the smallest spatial tile, in latent pixels, that still decodes sensibly.
    min_tile_latent: ClassVar[int] = 4
    #: whether the decoder's only link across the clip is GroupNorm statistics, so that with the
    #: whole clip's statistics (:mod:`vidmem.decode.clip_norm`) and a carried causal state it
    #: streams like a causal decoder; and whether that mode is this family's default.
    supports_clip_norm: ClassVar[bool] = False
    clip_norm_default: ClassVar[bool] = False
    #: for ``"window"`` streaming of a causal-frame-rule decoder: a window that starts inside the
    #: clip decodes its first latent to all its frames, as the full decode does (its
    #: ``decode_piece`` lifts the first-frame rule when ``first`` is false), instead of to one
    #: image frame.
    continues_windows: ClassVar[bool] = False

    def __init__(self, vae: torch.nn.Module, decode_kwargs: dict[str, Any] | None = None):
        self.vae = vae
        #: extra arguments of the VAE's own ``decode`` (e.g. LTX's ``temb``), for every piece.
        self.decode_kwargs: dict[str, Any] = dict(decode_kwargs or {})

    # --- geometry -------------------------------------------------------------------------
    @property
    def time_map(self) -> TimeMap:
        raise NotImplementedError

    @property
    def spatial_factor(self) -> int:
        raise NotImplementedError

    def streaming_for(self, clip_norm: bool) -> Streaming:
        """How a clip streams when it is (or is not) decoded with whole-clip statistics."""
        return self.streaming

    # --- the facts of one clip ------------------------------------------------------------
    def clip_facts(self, latents: torch.Tensor, clip_norm: bool) -> ClipFacts:
        """The facts of decoding ``latents`` (the VAE's native decode input) with (or without)
        whole-clip statistics; changes nothing on the adapter. Families whose facts depend on
        the clip override this."""
        return ClipFacts(time_map=self.time_map, spatial_factor=self.spatial_factor,
                         streaming=self.streaming_for(clip_norm), clip_norm=clip_norm,
                         native_time_axis=self.native_time_axis)

    # --- layouts --------------------------------------------------------------------------
    def to_canonical(self, latents: torch.Tensor) -> torch.Tensor:
        """The VAE's native decode input -> ``(B, C, T, h, w)``. Validates the rank."""
        if latents.ndim != 5:
            raise InvalidInput(
                f"{type(self.vae).__name__} decodes 5-D latents (B, C, T, h, w); got shape "
                f"{tuple(latents.shape)}"
            )
        return latents

    def from_canonical(self, pixels: torch.Tensor, facts: ClipFacts | None = None) -> torch.Tensor:
        """Canonical pixels -> the layout ``vae.decode(latents).sample`` has (for the clip of
        ``facts``, where the layout depends on it)."""
        return pixels

    def example_latents(self, t: int, h: int, w: int, device: str = "meta") -> torch.Tensor:
        """Latents of this size in the VAE's native ``decode`` layout (for planning: shapes only,
        meta tensors by default)."""
        channels = config_value(self.vae, "latent_channels", "z_dim", default=4)
        return torch.empty(1, int(channels), t, h, w, device=device)

    #: index of the time axis in the native decode output (for concatenating ``"pt"`` chunks);
    #: a clip's own is ``ClipFacts.native_time_axis``.
    native_time_axis: ClassVar[int] = 2

    def chunk_spans(self, latent_frames: int, chunk_latents: int) -> list[Span]:
        """How the clip's latent frames are cut into chunks (even chunks unless the decoder must
        be fed particular frame batches to reproduce its full decode)."""
        return split_even(latent_frames, chunk_latents)

    # --- decoding -------------------------------------------------------------------------
    def begin_decode(self, facts: ClipFacts) -> DecodeRun:
        """The state of one execution of a plan with these ``facts``, shared by its tiles."""
        return DecodeRun(facts)

    def new_state(self, run: DecodeRun) -> Any:
        """Fresh per-tile state (a causal cache) for ``"cache"`` streaming; ``None`` otherwise
        (families whose pieces need the clip's facts keep them, or ``run``, in the state)."""
        return None

    def decode_piece(self, z: torch.Tensor, state: Any, first: bool) -> torch.Tensor:
        """Decode canonical latents ``z`` (already on the VAE's device and dtype).

        For ``"cache"`` families ``z`` is the next chunk of one tile and ``first`` says whether
        it starts the clip; ``state`` is that tile's cache, updated in place. For ``"window"``
        families ``z`` is one whole window and ``first`` says whether it starts at latent 0.
        Returns canonical pixels, not clamped.
        """
        raise NotImplementedError

    def clip_norm_modules(self) -> list[torch.nn.Module]:
        """The ``nn.GroupNorm`` modules whose statistics span the whole clip (whole-clip mode).

        Norms that see flattened tokens ``(B, C, T*h*w)`` must run at latent resolution (the
        engine cuts a tile's share of them out with the tile's latent ``h x w``).
        """
        return []

    @classmethod
    def matches(cls, vae: torch.nn.Module) -> bool:
        return type(vae).__name__ in cls.vae_classes

    def describe(self) -> str:
        tm = self.time_map
        return (f"{self.name}: x{tm.factor} time ({'causal' if tm.causal_first_frame else 'plain'}),"
                f" x{self.spatial_factor} space, {self.streaming} streaming")


def config_value(vae: torch.nn.Module, *names: str, default: Any = None) -> Any:
    """First present attribute among ``names`` on ``vae.config`` (diffusers renames them often)."""
    cfg = getattr(vae, "config", None)
    for name in names:
        value = getattr(cfg, name, None) if cfg is not None else None
        if value is not None:
            return value
    return default
