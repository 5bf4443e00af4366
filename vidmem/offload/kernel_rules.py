"""What kernels allocate besides their outputs, per target device, for the memory simulator.

Why: under ``FakeTensorMode`` an op runs its meta kernel, which creates the op's *outputs* and
nothing else. Real kernels also allocate internally: attention kernels keep a log-sum-exp row and
per-thread tiles, CPU convolutions unfold their input (im2col), normalization kernels copy a
non-contiguous input before reading it. These buffers are allocated through the same allocator and
count in the peak, so each rule here allocates them as fake tensors for the duration of the op
(after the outputs, as the kernels do), where the tracker sees them come and go.

Every rule is taken from the PyTorch source of the kernel it describes (ATen, torch 2.x) and, for
the CPU target, checked against the profiler's allocation events of a real CPU run (tests and
``benchmarks/bench_plan.py``). The CUDA rules are the same reading of the CUDA kernels; they are
verified only when a GPU is available (``tests/test_gpu.py``).

Rules
-----
``scaled_dot_product_attention`` (replaced by :func:`simulated_sdpa`, a function-level rule: the
backend choice happens above the dispatcher):

* A boolean ``attn_mask`` is first converted to a float mask of the query dtype (both targets).
* CUDA, fp16/bf16, no mask, head dim <= 256: **flash attention**. ``q``, ``k``, ``v`` are padded to
  a head dim multiple of 8 (copies, only when not already a multiple), the output is allocated
  ``(B, Lq, H, Dv_padded)`` plus a float32 log-sum-exp ``(B, H, Lq)``; the padded output stays
  alive behind the sliced view that is returned.
* CUDA otherwise (float32, or a mask): **memory-efficient attention**: the output ``(B, Lq, H, Dv)``;
  the log-sum-exp is only computed when autograd needs it (never under ``no_grad``); a mask whose
  last dim is not a multiple of 16 is copied into an aligned buffer.
* CPU: the **CPU flash kernel** (``_scaled_dot_product_flash_attention_for_cpu``): output
  ``(B, Lq, H, Dv)``, float32 log-sum-exp ``(B, Lq, H)``, and per thread a float32 tile of
  ``qSplit * kvSplit + 2 * qSplit + qSplit * Dv`` elements (``qSplit`` 256 / 64 / 32 for query
  lengths >= 768 / >= 192 / shorter, ``kvSplit`` 512, both capped by the lengths) plus, for
  fp16/bf16, ``qSplit * kvSplit`` elements of the input dtype.
* Never an ``Lq x Lk`` score matrix: none of these kernels materializes one.

``convolution``:

* CPU, float32, chosen by ATen's ``use_mkldnn`` heuristic (groups > 1, kernels > 3x3, batch > 1,
  or ``N*C*D0*D1 > 20480``; 1x1 kernels only with more than one thread): **oneDNN** reorders the
  input and the output into blocked layouts: an input-sized and an output-sized buffer, plus the
  weight padded to blocks of 8 channels.
* CPU otherwise: the **native** kernels unfold the input (``slow_conv3d`` / ``_slow_conv2d``):
  ``B * C_in * prod(kernel) * prod(output spatial)`` elements, skipped for 1x1(x1) kernels with
  stride 1 and no padding; a non-contiguous input is first copied.
* CUDA: cuDNN takes its workspace through the caching allocator, up to what is free; the
  planner's constant :data:`vidmem.offload.simulate.KERNEL_WORKSPACE_BYTES` stands for it, and a
  non-contiguous input is copied (``input.contiguous(memory_format)``).

``_fused_rms_norm`` (``torch.nn.RMSNorm``, ``F.rms_norm``):

* CUDA: the fused kernel: output and a float32 ``rstd``; a non-contiguous input is copied.
* CPU: the composite kernel: the input upcast to float32 (fp16/bf16 only), ``x**2`` (float32,
  freed after the mean), ``x * rstd`` and ``* weight`` (float32), then the cast back.

``native_layer_norm`` / ``native_group_norm``: a non-contiguous input is copied first
(``expect_contiguous``), both targets.

Everything else: outputs only (element-wise, matmul, reductions, copies, concatenation, ...).
cuBLAS' workspace is allocated once per handle and kept: the planner's constant covers it.

Known gaps (CPU target only, where the rules serve to check the simulator): oneDNN's reorders
are modeled as full input, output and blocked-weight copies; for a strided "patchify"
convolution with few input channels (a CLIP image encoder's patch embedding) oneDNN copies less,
so such a stage is over-estimated (SVD's image encoder: x4). bf16 CPU attention on CPUs with AMX
also packs K and V (not modeled).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

Target = Literal["cuda", "cpu"]

#: ATen's CPU flash attention splits (aten/src/ATen/native/cpu/FlashAttentionKernel.cpp).
CPU_FLASH_KV_SPLIT = 512
#: ATen's ``use_mkldnn`` size threshold for float32 CPU convolutions (ConvUtils.h).
MKLDNN_MIN_ELEMENTS = 20480


def _cpu_flash_q_split(q_len: int) -> int:
    if q_len >= 768:
        return 256
    if q_len >= 192:
        return 64
    return 32


def _empty(shape: tuple[int, ...] | list[int], like: torch.Tensor,
           dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.empty(tuple(int(s) for s in shape), dtype=dtype or like.dtype, device=like.device)


def _pad_to(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def simulated_sdpa(target: Target, num_threads: int, query: torch.Tensor, key: torch.Tensor,
                   value: torch.Tensor, attn_mask: torch.Tensor | None = None,
                   dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                   enable_gqa: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` as the fused kernels allocate it (module docstring).

    Returns a tensor of the real output's shape, dtype and layout; its values are meaningless
    (fake tensors carry none)."""
    *batch, q_len, _ = query.shape
    k_len, dv = key.shape[-2], value.shape[-1]
    heads = batch[-1] if batch else 1
    outer = batch[:-1]
    keep: list[torch.Tensor] = []
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = _empty(attn_mask.shape, attn_mask, query.dtype)
        keep.append(attn_mask)
    low_precision = query.dtype in (torch.float16, torch.bfloat16)
    if target == "cuda":
        if low_precision and attn_mask is None and query.shape[-1] <= 256:
            head_dim = query.shape[-1]
            padded = _pad_to(head_dim, 8)
            if padded != head_dim:
                keep += [_empty((*t.shape[:-1], padded), t) for t in (query, key, value)]
            dv_pad = _pad_to(dv, 8)
            out = _empty((*outer, q_len, heads, dv_pad), query).transpose(-2, -3)
            keep.append(_empty((*outer, heads, q_len), query, torch.float32))
            return out[..., :dv]
        if attn_mask is not None and attn_mask.shape[-1] % 16:
            keep.append(_empty((*attn_mask.shape[:-1], _pad_to(attn_mask.shape[-1], 16)),
                               attn_mask))
        return _empty((*outer, q_len, heads, dv), query).transpose(-2, -3)
    # CPU flash attention kernel
    out = _empty((*outer, q_len, heads, dv), query).transpose(-2, -3)
    keep.append(_empty((*outer, q_len, heads), query, torch.float32))
    q_split = min(_cpu_flash_q_split(q_len), q_len)
    kv_split = min(CPU_FLASH_KV_SPLIT, k_len)
    per_thread = q_split * kv_split + 2 * q_split + q_split * dv
    keep.append(_empty((num_threads, per_thread), query, torch.float32))
    if low_precision:
        keep.append(_empty((num_threads, q_split, kv_split), query))
    del keep
    return out


class AttentionRule(TorchFunctionMode):
    """Routes ``F.scaled_dot_product_attention`` to :func:`simulated_sdpa` (the backend choice
    happens above the dispatcher, so it is replaced where Python calls it)."""

    def __init__(self, target: Target, num_threads: int):
        super().__init__()
        self.target = target
        self.num_threads = num_threads

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return simulated_sdpa(self.target, self.num_threads, *args, **kwargs)
        return func(*args, **kwargs)


def _use_mkldnn(x: torch.Tensor, weight: torch.Tensor, stride: list[int], padding: list[int],
                dilation: list[int], groups: int, num_threads: int) -> bool:
    """ATen's ``ConvParams::use_mkldnn`` for a float32 CPU input (ConvUtils / Convolution.cpp)."""
    if x.dtype != torch.float32:
        return False
    strided = any(s != 1 for s in stride)
    dilated = any(d != 1 for d in dilation)
    k_last, k_prev = weight.shape[-1], weight.shape[-2]
    if not (strided or dilated or x.shape[0] >= 16 or k_last != 1 or k_prev != 1
            or num_threads > 1):
        return False
    return (groups > 1 or (k_last > 3 and k_prev > 3) or x.shape[0] > 1
            or x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3] > MKLDNN_MIN_ELEMENTS)


def _conv_scratch(target: Target, num_threads: int, args: tuple,
                  out: torch.Tensor) -> list[tuple[tuple[int, ...], torch.dtype]]:
    x, weight = args[0], args[1]
    stride, padding, dilation, transposed = args[3], args[4], args[5], args[6]
    groups = args[8]
    scratch: list[tuple[tuple[int, ...], torch.dtype]] = []
    if target == "cuda":
        if not x.is_contiguous():
            scratch.append((tuple(x.shape), x.dtype))
        return scratch
    if transposed:  # the decoders here upsample by interpolation; im2col-free estimate
        return [(tuple(x.shape), x.dtype)] if not x.is_contiguous() else []
    if _use_mkldnn(x, weight, list(stride), list(padding), list(dilation), groups, num_threads):
        w_blocked = (_pad_to(weight.shape[0], 8), _pad_to(weight.shape[1], 8), *weight.shape[2:])
        return [(tuple(x.shape), x.dtype), (tuple(out.shape), out.dtype), (w_blocked, weight.dtype)]
    if not x.is_contiguous():
        scratch.append((tuple(x.shape), x.dtype))
    kernel = tuple(weight.shape[2:])
    pointwise = (all(k == 1 for k in kernel) and all(s == 1 for s in stride)
                 and all(p == 0 for p in padding))
    if not pointwise:
        columns = x.shape[0] * weight.shape[1] * math.prod(kernel) * math.prod(out.shape[2:])
        scratch.append(((int(columns),), x.dtype))
    return scratch


def _cpu_rms_norm(x: torch.Tensor, normalized_shape: list[int], weight: torch.Tensor | None,
                  eps: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """ATen's CPU composite ``_fused_rms_norm`` (layer_norm.cpp), op for op, on fake tensors."""
    dims = tuple(range(x.dim() - len(normalized_shape), x.dim()))
    upcast = x.to(torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x
    square = upcast.pow(2)
    mean = square.mean(dims, keepdim=True)
    del square
    eps_value = torch.finfo(upcast.dtype).eps if eps is None else eps
    rstd = torch.rsqrt(mean.add_(eps_value))
    result = upcast.mul(rstd)
    if weight is not None:
        result = result.mul(weight)
    return result.type_as(x), rstd


class KernelRules(TorchDispatchMode):
    """Adds kernel-internal buffers to the fake run (see the module docstring).

    Enter it after the ``MemTracker`` so that the buffers it allocates are tracked."""

    def __init__(self, target: Target, num_threads: int):
        super().__init__()
        self.target = target
        self.num_threads = num_threads

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        aten = torch.ops.aten
        if func is aten._fused_rms_norm.default and self.target == "cpu":
            return _cpu_rms_norm(*args, **kwargs)
        if func in (aten._fused_rms_norm.default, aten.native_layer_norm.default,
                    aten.native_group_norm.default):
            x = args[0]
            copies = [] if x.is_contiguous() else [(tuple(x.shape), x.dtype)]
            return _with_buffers(func, args, kwargs, lambda out: copies)
        if func is aten.convolution.default:
            return _with_buffers(func, args, kwargs,
                                 lambda out: _conv_scratch(self.target, self.num_threads, args, out))
        return func(*args, **kwargs)


def _with_buffers(func: Any, args: tuple, kwargs: dict,
                  buffers: Callable[[Any], list[tuple[tuple[int, ...], torch.dtype]]]) -> Any:
    """Run ``func`` and, while its outputs are alive, allocate and free the kernel's internal
    buffers (``buffers(outputs)``: shapes and dtypes): the peak then holds both, as on the
    device."""
    out = func(*args, **kwargs)
    first = out[0] if isinstance(out, (tuple, list)) else out
    held = [torch.empty(shape, dtype=dtype, device=first.device) for shape, dtype in buffers(out)]
    held.clear()
    return out
