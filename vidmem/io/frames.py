"""Any frame layout a diffusers pipeline produces -> uint8 ``(T, H, W, 3)`` for the encoder.

Accepted layouts (anything else is refused with a message that says what was expected):

==============================  =========================  ==================================
input                           shape                      values
==============================  =========================  ==================================
uint8 numpy array / tensor      ``(T, H, W, 3)``,          0..255, used as is
                                ``(H, W, 3)`` (one frame)
float torch tensor (VAE output) ``(1, 3, T, H, W)``        [-1, 1], as ``vae.decode`` returns
float numpy array               ``(T, H, W, 3)``,          [0, 1], as ``output_type="np"``
                                ``(1, T, H, W, 3)``        returns (``.frames``)
==============================  =========================  ==================================

Floats are *rounded* to the nearest uint8 (``export_to_video`` truncates, which darkens every
frame by half a level on average). Float torch tensors are converted on their own device, so a
CUDA chunk crosses to the host as uint8: 4x fewer bytes than float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InvalidInput, InvalidInputType

LAYOUTS_HELP = ("expected uint8 (T, H, W, 3) or (H, W, 3); a float tensor (1, 3, T, H, W) in "
                "[-1, 1] (the VAE's decode output); or float numpy (T, H, W, 3) / (1, T, H, W, 3) "
                "in [0, 1] (output_type='np')")


def _check_finite(x: Any) -> None:
    finite = torch.isfinite(x).all().item() if isinstance(x, torch.Tensor) else np.isfinite(x).all()
    if not finite:
        raise InvalidInput("frames contain NaN or inf values; the decode produced invalid pixels "
                         "(check the VAE's dtype: fp16 VAEs often overflow, try bf16 or fp32)")


def _float01_to_uint8(x: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] -> uint8, ``rint(clip(x, 0, 1) * 255)`` exactly (in ``x``'s dtype),
    one frame at a time through one scratch frame: a chunk of 480x832 frames is 77 MB of float32,
    and whole-chunk temporaries (clip, multiply, round, each a new array) made the conversion
    memory-bound at 2x the time, on the thread that feeds the encoder."""
    out = np.empty(x.shape, np.uint8)
    scratch = np.empty(x.shape[1:], x.dtype)
    for i in range(x.shape[0]):
        with np.errstate(over="ignore"):  # a huge finite value becomes inf, then 255 by the clip
            np.multiply(x[i], 255.0, out=scratch)
        # NaN or inf anywhere makes the sum non-finite (so does overflow: then the frame itself
        # is checked, and huge finite values are clipped like any other)
        if not np.isfinite(scratch.sum()):
            _check_finite(x[i])
        np.clip(scratch, 0.0, 255.0, out=scratch)
        np.rint(scratch, out=scratch)
        out[i] = scratch
    return out


def _check_channels_last(shape: tuple[int, ...]) -> None:
    if shape[-1] != 3:
        raise InvalidInput(f"frames must have 3 (RGB) channels in the last axis, got shape "
                         f"{shape}; {LAYOUTS_HELP}")


def vae_pixels_to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """VAE decode output ``(1, 3, T, H, W)`` in [-1, 1] -> uint8 ``(T, H, W, 3)`` on its device.

    Rounds to nearest; stays on the tensor's device so only uint8 bytes cross to the host.
    """
    u8 = ((pixels[0].float().clamp(-1, 1) + 1) * 127.5).round_().to(torch.uint8)
    return u8.permute(1, 2, 3, 0).contiguous()


def vae_pixels_to_uint8_(pixels: torch.Tensor) -> torch.Tensor:
    """:func:`vae_pixels_to_uint8` that reuses ``pixels`` (float, ``(1, 3, T, H, W)``) as its
    scratch space: it is overwritten. The same operations in the same order, so the result is
    bit-identical; the only new allocation is the uint8 output (for float32 input; the
    out-of-place version briefly holds two more float copies of the chunk, 8x the output)."""
    if not pixels.is_floating_point():
        raise InvalidInputType(f"expected float pixels, got {pixels.dtype}")
    # Other float dtypes are converted first, exactly as ``.float()`` does out of place.
    x = pixels[0] if pixels.dtype == torch.float32 else pixels[0].float()
    x.clamp_(-1, 1).add_(1).mul_(127.5).round_()
    out = torch.empty((x.shape[1], x.shape[2], x.shape[3], x.shape[0]), dtype=torch.uint8,
                      device=x.device)
    out.copy_(x.permute(1, 2, 3, 0))  # the float -> uint8 cast, as ``.to(torch.uint8)``
    return out


def to_uint8_frames(frames: Any) -> np.ndarray:
    """Convert ``frames`` (see the module docstring for layouts) to contiguous uint8 (T, H, W, 3)."""
    if isinstance(frames, torch.Tensor):
        x = frames.detach()
        if x.dtype == torch.uint8:
            if x.ndim == 3:
                x = x.unsqueeze(0)
            if x.ndim != 4:
                raise InvalidInput(f"uint8 frames must be (T, H, W, 3) or (H, W, 3), got shape "
                                 f"{tuple(x.shape)}")
            _check_channels_last(tuple(x.shape))
            return np.ascontiguousarray(x.cpu().numpy())
        if not x.is_floating_point():
            raise InvalidInputType(f"frames of dtype {x.dtype} are not supported; {LAYOUTS_HELP}")
        if x.ndim != 5:
            raise InvalidInput(f"a float tensor must be the VAE's decode output (1, 3, T, H, W) in "
                             f"[-1, 1], got shape {tuple(x.shape)}; {LAYOUTS_HELP}")
        if x.shape[0] != 1:
            raise InvalidInput(f"one video at a time: got a batch of {x.shape[0]} in "
                             f"{tuple(x.shape)}; pass video[i:i+1]")
        if x.shape[1] != 3:
            raise InvalidInput(f"a float tensor must be (1, 3, T, H, W) with 3 channels in axis 1, "
                             f"got shape {tuple(x.shape)}")
        _check_finite(x)
        return vae_pixels_to_uint8(x).cpu().numpy()

    if isinstance(frames, np.ndarray):
        x = frames
        if x.dtype == np.uint8:
            if x.ndim == 3:
                x = x[None]
            if x.ndim != 4:
                raise InvalidInput(f"uint8 frames must be (T, H, W, 3) or (H, W, 3), got shape "
                                 f"{x.shape}")
            _check_channels_last(x.shape)
            return np.ascontiguousarray(x)
        if np.issubdtype(x.dtype, np.floating):
            if x.ndim == 5:
                if x.shape[0] != 1:
                    raise InvalidInput(f"one video at a time: got a batch of {x.shape[0]} in "
                                     f"{x.shape}; pass frames[i]")
                x = x[0]
            if x.ndim != 4:
                raise InvalidInput(f"float numpy frames must be (T, H, W, 3) or (1, T, H, W, 3) in "
                                 f"[0, 1], got shape {x.shape}")
            _check_channels_last(x.shape)
            return _float01_to_uint8(x)
        raise InvalidInputType(f"frames of dtype {x.dtype} are not supported; {LAYOUTS_HELP}")

    raise InvalidInputType(f"frames must be a numpy array or a torch tensor, got {type(frames).__name__}; "
                    f"{LAYOUTS_HELP}")
