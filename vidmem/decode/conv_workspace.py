"""Bound the scratch memory of CPU 3D convolutions, without changing a single output bit.

Why: for a float32 ``conv3d`` on CPU, torch picks oneDNN only when the input is large enough
(roughly ``batch * channels * frames * height > 20480``); otherwise it runs ``slow_conv3d``,
which first unfolds the whole input into an im2col *column buffer* of
``C_in * kT * kH * kW * T_out * H_out * W_out`` values. For a VAE decoder's last stages (few
channels, full resolution, a few frames per call) that is the largest allocation of the whole
decode: 658 MiB for one 4-channel 3x3x3 conv over 4 frames of 480x832, ~27x its own output,
allocated, page-faulted in and unmapped again on every call. See :mod:`vidmem.breakdown` for how
it was found.

:class:`BoundedConvWorkspace` is a ``TorchFunctionMode``: inside it, a ``conv3d`` that torch
would run through ``slow_conv3d`` with a column buffer above ``max_bytes`` is computed by
:func:`split_conv3d` in pieces (runs of output frames, then bands of output rows), each piece's
columns gathered into one buffer that is reused by every piece and every call while the mode is
active, then multiplied exactly as ``slow_conv3d`` does. Every output value is the same dot
product over the same values in the same order, so the result is bit-identical to the unsplit
call (tested); only the size of each GEMM changes. Calls that torch sends to oneDNN (or any other
backend), calls on other devices or in other dtypes than float32, grouped or transposed
convolutions, calls that need autograd, calls whose buffer is already small and calls whose
frames cannot be cut at aligned places (:func:`piece_shape`) pass through untouched.

(oneDNN itself would need no column buffer and is 3-5x faster at these shapes, but its results
differ from ``slow_conv3d``'s in the last bits, so the decode would no longer equal
``vae.decode``; that is not done here.)
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import InvalidOptions

#: Default cap on the column buffer. Smaller pieces cost time (more, smaller GEMMs and copies):
#: on the realistic Wan config (480x832, 17 frames, 2 threads) a 3 MiB cap took ~2.3x the CPU
#: time of torch's unsplit calls, 32 MiB ~1.2-1.4x, 64 MiB ~1.0x (the unsplit call pays for
#: page-faulting its huge buffer in, ~20 s of system time), while the peak over the baseline was
#: 404 / 464 / 488 MiB against ~1390 MiB unsplit (benchmarks/RESULTS.md).
DEFAULT_MAX_WORKSPACE_BYTES = 64 << 20

_Triple = tuple[int, int, int]

#: Environment override of the cap: a size (``64MiB``, bytes) or ``0`` to switch splitting off.
ENV_VAR = "VIDMEM_CONV_WORKSPACE"


def configured_max_bytes() -> int | None:
    """The cap for this decode: ``$VIDMEM_CONV_WORKSPACE`` if set (``0``/``off``: ``None``, no
    splitting), else :data:`DEFAULT_MAX_WORKSPACE_BYTES`. Read at each decode's start."""
    from ..memory import parse_bytes

    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return DEFAULT_MAX_WORKSPACE_BYTES
    if value.lower() in ("0", "off", "none", "false", "no"):
        return None
    try:
        return parse_bytes(value)
    except ValueError as e:
        raise InvalidOptions(f"${ENV_VAR}: {e}") from None


def _triple(value: Any) -> _Triple:
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    return value * 3 if len(value) == 1 else value  # type: ignore[return-value]


def _uses_slow_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      stride: _Triple, padding: _Triple, dilation: _Triple) -> bool:
    """Whether torch would run this convolution as ``slow_conv3d`` (im2col + GEMM)."""
    try:
        backend = torch._C._select_conv_backend(x, weight, bias, list(stride), list(padding),
                                                list(dilation), False, [0, 0, 0], 1)
    except (AttributeError, RuntimeError, TypeError):  # private API moved: play safe
        return False
    return getattr(backend, "name", str(backend)).endswith("Slow3d")


def column_bytes(x: torch.Tensor, weight: torch.Tensor, out_size: _Triple) -> int:
    """Bytes of ``slow_conv3d``'s column buffer for one batch item."""
    c_in, kt, kh, kw = weight.shape[1:]
    return c_in * kt * kh * kw * math.prod(out_size) * x.element_size()


def _input_span(out_start: int, out_stop: int, kernel: int, stride: int, dilation: int,
                pad: int, size: int) -> tuple[int, int, int, int]:
    """Input range ``[lo, hi)`` an output range reads, clipped to the input, and the zeros to
    add before and after it (the convolution's padding that falls inside this piece)."""
    lo = out_start * stride - pad
    hi = (out_stop - 1) * stride + dilation * (kernel - 1) + 1 - pad
    return max(lo, 0), min(hi, size), max(0, -lo), max(0, hi - size)


#: Pieces cover whole multiples of this many output positions, and at least
#: :data:`MIN_PIECE_POSITIONS` of them; see :func:`piece_shape`.
ALIGN_POSITIONS = 64
MIN_PIECE_POSITIONS = 4096


def piece_shape(out_size: _Triple, per_position_bytes: int,
                max_bytes: int) -> tuple[int, int] | None:
    """``(frames, rows)`` of output per piece, or ``None`` when the call must not be split.

    Why the alignment: a GEMM's result for one output value can depend on where that value
    falls in the matrix. BLAS (MKL here) computes the rows of its big dimension in register
    blocks and treats a leftover partial block, and very small matrices, with other kernels
    whose rounding differs in the last bit (measured: a 3-channel conv over 33x47 frames split
    into row bands differed from the unsplit call in a handful of values). So a piece always
    holds a multiple of :data:`ALIGN_POSITIONS` output positions (and at least
    :data:`MIN_PIECE_POSITIONS`): every piece boundary is also a block boundary of the unsplit
    call, and nothing is computed by a remainder kernel that was not before. A frame whose size
    is not such a multiple (a decoder's odd-sized latent-resolution stages, say) is not split
    at all. Every float32 split we measured under this rule is bit-identical (tests cover the
    shapes of Wan's decoder at 480x832 and at test sizes). float64 is not split: its GEMM
    kernels block differently (aligned float64 pieces differed in the last bit).
    """
    t_out, h_out, w_out = out_size
    frame = h_out * w_out
    if frame % ALIGN_POSITIONS or frame < MIN_PIECE_POSITIONS:
        return None
    row_step = ALIGN_POSITIONS // math.gcd(w_out, ALIGN_POSITIONS)  # rows * w_out aligned
    min_rows = -(-MIN_PIECE_POSITIONS // w_out)
    min_rows = -(-min_rows // row_step) * row_step
    fit_rows = max_bytes // (per_position_bytes * w_out)
    if fit_rows >= h_out:
        return max(1, min(t_out, fit_rows // h_out)), h_out
    return 1, min(h_out, max(min_rows, fit_rows // row_step * row_step))


def split_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 stride: _Triple, padding: _Triple, dilation: _Triple, max_bytes: int,
                 columns: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``F.conv3d`` (groups 1) as ``slow_conv3d`` computes it, in pieces whose column buffer
    stays under ``max_bytes`` (see :func:`piece_shape` for the piece sizes, and for when a call
    is not split: then it is computed unsplit, by ``F.conv3d``).

    ``slow_conv3d`` unfolds the input into columns ``(C_in*kT*kH*kW, T_out*H_out*W_out)`` and
    multiplies: ``out = weight.view(C_out, -1) @ columns (+ bias)``, one GEMM per batch item.
    Here each piece (a run of output frames, or a band of output rows within a frame when one
    frame is still too large) gathers its columns from a strided view of the (zero-padded) input
    slice it reads into ``columns`` - a flat buffer the caller may pass to reuse across calls
    (replaced if too small; returned with the output) - and runs the same GEMM on it
    (``addmm``/``mm`` issue the same BLAS call as ``slow_conv3d``).
    """
    n, c_in = x.shape[:2]
    sizes = x.shape[2:]
    kernel = weight.shape[2:]
    out_size = tuple((sizes[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1)
                     // stride[i] + 1 for i in range(3))
    t_out, h_out, w_out = out_size
    c_out = weight.shape[0]
    k = c_in * kernel[0] * kernel[1] * kernel[2]
    shape = piece_shape(out_size, k * x.element_size(), max_bytes)
    if shape is None:
        return F.conv3d(x, weight, bias, stride, padding, dilation), columns
    frames_per_piece, rows_per_piece = shape
    need = k * min(frames_per_piece, t_out) * min(rows_per_piece, h_out) * w_out
    if columns is None or columns.numel() < need or columns.dtype != x.dtype:
        columns = torch.empty(need, dtype=x.dtype, device=x.device)
    w2d = weight.reshape(c_out, k)
    b2d = bias.reshape(c_out, 1) if bias is not None else None
    out = torch.empty((n, c_out, *out_size), dtype=x.dtype, device=x.device)
    w_lo, w_hi, w_before, w_after = _input_span(0, w_out, kernel[2], stride[2], dilation[2],
                                                padding[2], sizes[2])
    for t0 in range(0, t_out, frames_per_piece):
        t1 = min(t0 + frames_per_piece, t_out)
        t_lo, t_hi, t_before, t_after = _input_span(t0, t1, kernel[0], stride[0], dilation[0],
                                                    padding[0], sizes[0])
        for h0 in range(0, h_out, rows_per_piece):
            h1 = min(h0 + rows_per_piece, h_out)
            h_lo, h_hi, h_before, h_after = _input_span(h0, h1, kernel[1], stride[1],
                                                        dilation[1], padding[1], sizes[1])
            pads = (w_before, w_after, h_before, h_after, t_before, t_after)
            piece_size = (t1 - t0, h1 - h0, w_out)
            m = (t1 - t0) * (h1 - h0) * w_out
            cols = columns[:k * m]
            for b in range(n):
                piece = x[b, :, t_lo:t_hi, h_lo:h_hi, w_lo:w_hi]
                if any(pads):  # zeros where the convolution pads (a small copy of the slice)
                    piece = F.pad(piece, pads)
                s_c, s_t, s_h, s_w = piece.stride()
                taps = piece.as_strided(
                    (c_in, *kernel, *piece_size),
                    (s_c, s_t * dilation[0], s_h * dilation[1], s_w * dilation[2],
                     s_t * stride[0], s_h * stride[1], s_w * stride[2]))
                cols.view(c_in, *kernel, *piece_size).copy_(taps)
                del piece, taps
                result = (torch.addmm(b2d, w2d, cols.view(k, m)) if b2d is not None
                          else torch.mm(w2d, cols.view(k, m)))
                out[b, :, t0:t1, h0:h1] = result.view(c_out, *piece_size)
                del result
    return out, columns


class BoundedConvWorkspace(TorchFunctionMode):
    """Within this mode, CPU ``slow_conv3d`` calls keep their column buffer under ``max_bytes``
    (bit-identical output; see the module docstring). ``max_bytes=None`` disables it."""

    def __init__(self, max_bytes: int | None = DEFAULT_MAX_WORKSPACE_BYTES):
        super().__init__()
        self.max_bytes = max_bytes
        #: how many calls were split (for tests and reports).
        self.split_calls = 0
        self._columns: torch.Tensor | None = None  # reused by every split call in this mode

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.conv3d and self.max_bytes is not None:
            result = self._maybe_split(*args, **kwargs)
            if result is not None:
                return result
        return func(*args, **kwargs)

    def _maybe_split(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                     groups: int = 1) -> torch.Tensor | None:
        if (groups != 1 or isinstance(padding, str) or not isinstance(x, torch.Tensor)
                or x.device.type != "cpu" or x.dim() != 5 or x.is_mkldnn
                or x.dtype != torch.float32 or weight.dtype != torch.float32
                or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))):
            return None
        stride, padding, dilation = _triple(stride), _triple(padding), _triple(dilation)
        sizes, kernel = x.shape[2:], weight.shape[2:]
        out_size = tuple((sizes[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1)
                         // stride[i] + 1 for i in range(3))
        if min(out_size) < 1 or column_bytes(x, weight, out_size) <= self.max_bytes:
            return None
        per_position = column_bytes(x, weight, (1, 1, 1))
        if piece_shape(out_size, per_position, self.max_bytes) is None:
            return None
        if not _uses_slow_conv3d(x, weight, bias, stride, padding, dilation):
            return None
        self.split_calls += 1
        out, self._columns = split_conv3d(x, weight, bias, stride, padding, dilation,
                                          self.max_bytes, self._columns)
        return out

    def __exit__(self, *exc: Any) -> Any:
        self._columns = None
        return super().__exit__(*exc)
