"""Carrying a causal decoder's temporal state across chunks, for decoders without a cache API.

Why: Wan and CogVideoX decoders accept a cache argument, so chunked decoding with them is exact.
HunyuanVideo 1.5 and the causal configurations of LTX-Video / LTX-2 are just as causal (every op
is either per-frame, a causal temporal convolution, or frame-causal attention) but their modules
have no cache parameter: each call replicate-pads its first frame as if the clip started there.
We give the few modules that look back in time a stateful ``forward`` for the duration of one
decoder call (:func:`forwards_replaced`), which reads and updates a per-tile :class:`CausalState`,
and leave everything else (norms, activations, resnet wiring, timestep conditioning) to the
library's own code. Only leaf-level temporal logic is re-expressed here; the per-family modules say
which module types get which stateful forward.

Also here: :func:`pinned_rng`, which makes decoders that inject random noise (LTX ``inject_noise``)
draw the same noise for every piece, as one full decode would.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

_MISSING = object()


@contextlib.contextmanager
def forwards_replaced(replacements: dict[nn.Module, Callable[..., Any]]) -> Iterator[None]:
    """Give each module in ``replacements`` another ``forward`` while the block runs.

    The replacement is an instance attribute (``nn.Module.__call__`` looks ``forward`` up on the
    instance), so parameters, buffers and any hooks on the *child* modules (where accelerate and
    diffusers put offload hooks: on modules that own parameters) keep working. Whatever instance
    attribute was there before is put back, even on error. Not thread-safe: two decodes of the same
    VAE instance must not run concurrently.
    """
    saved: list[tuple[nn.Module, Any]] = []
    try:
        for module, fn in replacements.items():
            saved.append((module, module.__dict__.get("forward", _MISSING)))
            module.forward = fn  # type: ignore[method-assign]
        yield
    finally:
        for module, previous in reversed(saved):
            if previous is _MISSING:
                module.__dict__.pop("forward", None)
            else:
                module.forward = previous  # type: ignore[method-assign]


@dataclass
class CausalState:
    """The temporal state of one spatial tile of a causal decoder, carried from chunk to chunk.

    ``frames``: per causal conv, the last ``kernel_t - 1`` frames of its (time-padded) input,
    which stand in for the replicate padding a fresh call would use. ``kv``: per frame-causal
    attention block, the keys and values of every frame decoded so far (later frames attend to
    all earlier ones, so this grows with the clip, at the block's latent resolution).
    ``started``: whether the clip's first chunk has been decoded (first-frame special cases).
    """

    frames: dict[nn.Module, torch.Tensor] = field(default_factory=dict)
    kv: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    started: bool = False


def causal_time_input(state: CausalState, module: nn.Module, x: torch.Tensor, kernel_t: int,
                      pad_first: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
    """``x`` preceded by the ``kernel_t - 1`` frames a causal conv needs before it.

    On the clip's first chunk those frames come from ``pad_first(x, n)`` (the module's own
    padding: replicating frame 0); later, from the end of the previous chunk's input, so the conv
    sees exactly the frames it would see in one call over the whole clip. The new tail is stored
    (cloned, so the chunk's activations can be freed).
    """
    n = kernel_t - 1
    if n <= 0:
        return x
    previous = state.frames.get(module)
    head = pad_first(x, n) if previous is None else previous
    xt = torch.cat([head, x], dim=2)
    state.frames[module] = xt[:, :, xt.shape[2] - n:].clone()
    return xt


def padded_causal_conv_forward(module: nn.Module, state: CausalState, x: torch.Tensor) -> torch.Tensor:
    """The ``forward`` of a causal conv that pads with one ``F.pad`` and then convolves, with the
    time padding taken from the cache (HunyuanVideo's and HunyuanVideo 1.5's causal convs).

    Such a module has ``time_causal_padding = (W, W, H, H, k_t - 1, 0)``, ``pad_mode`` and an
    inner ``conv``. Padding time first (from the cache, or on the clip's first chunk by the
    module's own mode) and then space gives the same tensor as its single pad, since the pad is
    separable.
    """
    pad_w0, pad_w1, pad_h0, pad_h1, pad_t, _ = module.time_causal_padding
    mode = module.pad_mode

    def pad_first(t: torch.Tensor, n: int) -> torch.Tensor:  # the n frames the module pads with
        return F.pad(t[:, :, :1], (0, 0, 0, 0, n, 0), mode=mode)[:, :, :n]

    xt = causal_time_input(state, module, x, pad_t + 1, pad_first)
    return module.conv(F.pad(xt, (pad_w0, pad_w1, pad_h0, pad_h1, 0, 0), mode=mode))


def frame_causal_attention(state: CausalState, module: nn.Module, q: torch.Tensor, k: torch.Tensor,
                           v: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """Scaled dot-product attention where a token sees its own frame and every earlier frame.

    ``q``, ``k``, ``v``: ``(B, heads, frames * tokens_per_frame, D)`` for this chunk's frames. The
    keys and values of earlier chunks come from ``state.kv`` and this chunk's are appended. One
    attention call per query frame (keys: everything up to and including that frame) instead of a
    ``(queries x keys)`` mask: no mask memory, and fused kernels stay usable.
    """
    past = state.kv.get(module)
    if past is not None:
        k = torch.cat([past[0], k], dim=2)
        v = torch.cat([past[1], v], dim=2)
    state.kv[module] = (k, v)
    n_frames = q.shape[2] // tokens_per_frame
    n_past = k.shape[2] // tokens_per_frame - n_frames
    outs = []
    for i in range(n_frames):
        qi = q[:, :, i * tokens_per_frame:(i + 1) * tokens_per_frame]
        visible = (n_past + i + 1) * tokens_per_frame
        outs.append(F.scaled_dot_product_attention(qi, k[:, :, :visible], v[:, :, :visible]))
    return torch.cat(outs, dim=2)


def depth_to_time_space(x: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
    """``(B, C*st*sh*sw, T, H, W) -> (B, C, T*st, H*sh, W*sw)``: the sub-pixel shuffle that
    LTX upsamplers use, channel-major (the factor index is the fastest-varying channel index)."""
    st, sh, sw = stride
    b, c, t, h, w = x.shape
    x = x.reshape(b, c // (st * sh * sw), st, sh, sw, t, h, w)
    # -> (B, C, T, st, H, sh, W, sw), then merge each (size, factor) pair
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c // (st * sh * sw), t * st, h * sh, w * sw)


class pinned_rng(contextlib.AbstractContextManager):
    """Run a block with the global RNG set to one fixed state, restoring the real state after.

    Decoders that inject noise (LTX ``inject_noise``) draw a fresh ``(H, W)`` noise map per resnet
    per call and add it to *every* frame of the call. Decoding in pieces would give every piece a
    different map (visible as a change of grain at each seam); pinning the state captured once per
    decode makes every piece draw the maps one full decode from that state would draw.
    """

    def __init__(self, cpu_state: torch.Tensor, cuda_states: dict[int, torch.Tensor]):
        self._cpu = cpu_state
        self._cuda = cuda_states
        self._fork: contextlib.AbstractContextManager | None = None

    @staticmethod
    def capture(device: torch.device | None = None) -> "pinned_rng":
        """Capture the current RNG state (CPU, and ``device`` if it is a CUDA device)."""
        cuda: dict[int, torch.Tensor] = {}
        if device is not None and device.type == "cuda" and torch.cuda.is_available():
            index = device.index if device.index is not None else torch.cuda.current_device()
            cuda[index] = torch.cuda.get_rng_state(index)
        return pinned_rng(torch.get_rng_state(), cuda)

    def __enter__(self) -> "pinned_rng":
        self._fork = torch.random.fork_rng(devices=list(self._cuda))
        self._fork.__enter__()
        torch.set_rng_state(self._cpu)
        for index, state in self._cuda.items():
            torch.cuda.set_rng_state(state, index)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._fork is not None
        self._fork.__exit__(*exc)
        self._fork = None
