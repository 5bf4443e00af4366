"""LTX-Video (``AutoencoderKLLTXVideo``): x8 time (``8(T-1)+1`` frames), x32 space, a decoder that
may take a timestep (``temb``) and may inject noise.

The decoder is purely local in time: per-position RMS/Layer norms, 3D convolutions, and
depth-to-space upsamplers that drop the first ``stride_t - 1`` frames of a call. What that means
for streaming depends on ``decoder_causal``:

* ``decoder_causal=False`` (every released LTX-Video / LTX-2 checkpoint): the convolutions are
  centred and replicate-pad *both* ends of a call, so a frame depends on later latents too and
  no finite cache reproduces the full decode. We decode overlapping windows and cross-fade the
  whole re-decoded overlap (``"window"`` streaming): near a seam the incoming window's frames have
  past context the outgoing window lacks future context for, and a full cross-fade weights each
  by how far it is from its own window edge.
* ``decoder_causal=True``: every temporal conv only looks back, so the state linking one chunk to
  the next is the last ``k_t - 1`` input frames of each conv plus "this is not the clip start" for
  the upsamplers; we carry that per tile (``"cache"`` streaming, see :mod:`.causal_cache`) and the
  chunks equal ``vae.decode``.

The decode timestep (``vae.decode(z, temb)``; LTX pipelines pass ``decode_timestep``) is given as
``decode_kwargs={"temb": t}`` and reaches every piece. Decoders with ``inject_noise`` draw a random
``(H, W)`` map per resnet per call and add it to every frame of that call; every piece is decoded
from the same captured RNG state, so all pieces add the same maps, as one full decode would (an
unseeded decode is still random: it is the state of the global RNG when the decode starts).
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import InvalidOptions, UnsupportedModel
from ..geometry import TimeMap
from .base import DecodeRun, FamilyAdapter, Streaming
from .causal_cache import (CausalState, causal_time_input, depth_to_time_space, forwards_replaced,
                           pinned_rng)


@dataclass
class LTXPieceState:
    """One tile's state: the decode it belongs to (whose pinned noise RNG every piece of the
    decode shares) and, for causal decoders, the tile's carried :class:`CausalState` (``None``:
    a window of a non-causal decoder, decoded fresh)."""

    run: DecodeRun
    causal: CausalState | None = None


class LTXVideoAdapter(FamilyAdapter):
    name = "ltx"
    vae_classes = ("AutoencoderKLLTXVideo",)
    default_fps = 24
    clamps_output = False
    #: Window-mode defaults (non-causal decoders). Measured on tiny and full-depth random
    #: decoders (tests/test_family_ltx.py; numbers in the adapter's report): cross-fading the
    #: whole overlap beats dropping it (warm-up discard) by several dB, because the outgoing
    #: window's last frames lack *future* context; 2 latents of context (9 overlap frames) was
    #: the knee of the PSNR-vs-cost curve at the default 16-frame chunk.
    default_context_latents = 2
    #: windows inside the clip decode their first latent to all 8 frames, as the full decode
    #: does, instead of to one image frame: 7 more frames of real context before the cross-fade.
    continues_windows = True
    default_blend_frames = 64  # capped by the engine at the overlap: "cross-fade all of it"
    # x32: 2 latent px = 64 px. LTX-2 pads reflectively, which needs at least 2 px per side.
    min_tile_latent = 2
    #: decode kwargs the decoder understands besides ``temb`` (LTX-2 adds ``causal``).
    _extra_kwargs: ClassVar[tuple[str, ...]] = ()
    #: module class names, as found in diffusers.
    _conv_class: ClassVar[str] = "LTXVideoCausalConv3d"
    _upsampler_class: ClassVar[str] = "LTXVideoUpsampler3d"
    #: the frame-count rule, for error messages.
    time_map_doc: ClassVar[str] = "8(T-1)+1"

    def __init__(self, vae: nn.Module, decode_kwargs: dict[str, Any] | None = None):
        super().__init__(vae, decode_kwargs)
        unknown = set(self.decode_kwargs) - {"temb", "return_dict", *self._extra_kwargs}
        if unknown:
            raise InvalidOptions(f"{type(vae).__name__}.decode takes no argument(s) {sorted(unknown)}; "
                             f"vidmem passes only {['temb', *self._extra_kwargs]} to its decoder")
        decoder = vae.decoder
        if getattr(decoder, "patch_size_t", 1) != 1:
            raise UnsupportedModel(f"{type(vae).__name__} with patch_size_t={decoder.patch_size_t} is not "
                             f"supported (its frames do not follow the {self.time_map_doc} rule)")
        self._injects_noise = any(getattr(m, "per_channel_scale1", None) is not None
                                  for m in decoder.modules())

    # --- what kind of decoder this is -----------------------------------------------------
    @property
    def causal(self) -> bool:
        """Whether the decoder's temporal convolutions only look back (``decoder_causal``)."""
        return bool(getattr(self.vae.decoder.conv_in, "is_causal", False))

    @property
    def streaming(self) -> Streaming:  # type: ignore[override]
        return "cache" if self.causal else "window"

    def _upsamplers(self) -> list[nn.Module]:
        return [m for m in self.vae.decoder.modules() if type(m).__name__ == self._upsampler_class]

    @property
    def time_map(self) -> TimeMap:
        # From the decoder itself (each x2 temporal upsampler maps T -> 2T - 1), not from
        # ``vae.temporal_compression_ratio``, which diffusers derives from the *encoder* config.
        factor = math.prod(m.stride[0] for m in self._upsamplers())
        return TimeMap(int(factor), causal_first_frame=True)

    @property
    def spatial_factor(self) -> int:
        return int(self.vae.decoder.patch_size * math.prod(m.stride[1] for m in self._upsamplers()))

    # --- decoding -------------------------------------------------------------------------
    def new_state(self, run: DecodeRun) -> LTXPieceState:
        return LTXPieceState(run, CausalState() if self.causal else None)

    def _timestep(self, z: torch.Tensor) -> torch.Tensor | None:
        temb = self.decode_kwargs.get("temb")
        if temb is None:
            if getattr(self.vae.decoder, "time_embedder", None) is not None:
                raise InvalidOptions(
                    f"this {type(self.vae).__name__} is timestep-conditioned "
                    f"(timestep_conditioning=True): pass the decode timestep as "
                    f"decode_kwargs={{'temb': t}} (LTX pipelines use decode_timestep, e.g. 0.05)")
            return None
        if not torch.is_tensor(temb):
            temb = torch.tensor([float(temb)] * z.shape[0])
        return temb.to(z.device)

    def run_decoder(self, z: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        """One call of the VAE's own decoder (bypassing ``vae.decode``'s tiling)."""
        return self.vae.decoder(z, temb)

    def decode_piece(self, z: torch.Tensor, piece_state: LTXPieceState, first: bool
                     ) -> torch.Tensor:
        temb = self._timestep(z)
        run = piece_state.run
        if self._injects_noise and run.noise_rng is None:
            # once per decode: every piece draws the same maps
            run.noise_rng = pinned_rng.capture(z.device)
        state = piece_state.causal
        with run.noise_rng if run.noise_rng is not None else contextlib.nullcontext():
            if state is None:  # a window: inside the clip, lift the upsamplers' first-frame rule
                continued = {} if first or not self.continues_windows else {
                    m: functools.partial(_upsample_forward_continued, m)
                    for m in self._upsamplers() if m.stride[0] > 1}
                with forwards_replaced(continued):
                    return self.run_decoder(z, temb)
            if first:
                state.frames.clear()
                state.started = False
            with forwards_replaced(self._stateful_forwards(state)):
                out = self.run_decoder(z, temb)
            state.started = True
            return out

    def _stateful_forwards(self, state: CausalState) -> dict[nn.Module, Any]:
        replacements: dict[nn.Module, Any] = {}
        for module in self.vae.decoder.modules():
            kind = type(module).__name__
            if kind == self._conv_class and module.kernel_size[0] > 1:
                if module.conv.stride[0] != 1 or module.conv.dilation[0] != 1:
                    raise NotImplementedError(f"{kind} with a temporal stride or dilation")
                replacements[module] = functools.partial(_conv_forward, module, state)
            elif kind == self._upsampler_class and module.stride[0] > 1 and state.started:
                replacements[module] = functools.partial(_upsample_forward_continued, module)
        return replacements


def _replicate_first(x: torch.Tensor, n: int) -> torch.Tensor:
    """The padding LTX's causal convs put before a call: frame 0, ``n`` times."""
    return x[:, :, :1].expand(-1, -1, n, -1, -1)


def _conv_forward(module: nn.Module, state: CausalState, x: torch.Tensor,
                  causal: bool = True) -> torch.Tensor:
    """``LTX(2)VideoCausalConv3d.forward`` (causal branch) with the time padding from the cache.

    ``causal`` is LTX-2's runtime flag; this replacement is only installed for causal decoders.
    Spatial padding is the inner ``nn.Conv3d``'s own (``padding_mode`` zeros / reflect).
    """
    return module.conv(causal_time_input(state, module, x, module.kernel_size[0], _replicate_first))


def _upsample_forward_continued(module: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """``LTX(2)VideoUpsampler3d.forward`` for a chunk that does not start the clip.

    The module's own forward drops the first ``stride_t - 1`` output frames, which exist only
    before the clip's first frame; a later chunk keeps all of them (main and residual path).
    ``kwargs`` is LTX-2's ``causal`` flag, passed on to the conv.
    """
    out = depth_to_time_space(module.conv(x, **kwargs), module.stride)
    if module.residual:
        repeats = math.prod(module.stride) // module.upscale_factor
        out = out + depth_to_time_space(x, module.stride).repeat(1, repeats, 1, 1, 1)
    return out
