"""What kernels allocate besides their outputs, per target device, for the memory simulator.

Why: under ``FakeTensorMode`` an op runs its meta kernel, which creates the op's *outputs* and
nothing else. Real kernels also allocate internally: attention kernels keep a log-sum-exp row and
per-thread tiles, CPU convolutions unfold their input (im2col), normalization kernels copy a
non-contiguous input before reading it. These buffers are allocated through the same allocator and
count in the peak, so each rule here allocates them as fake tensors for the duration of the op
(after the outputs, as the kernels do), where the tracker sees them come and go.

Every rule is taken from the PyTorch source of the kernel it describes (ATen, torch 2.x) and, for
the CPU target, checked against the profiler's allocation events of a real CPU run (tests and
``benchmarks/bench_plan.py``). The CUDA rules are the same reading of the CUDA kernels, checked
on an H200 (``benchmarks/bench_plan.py --device cuda``, ``tests/offload/test_gpu_plan.py``, and the
per-op measurements the attention tests in ``tests/offload/test_simulate.py`` reproduce).

Rules
-----
``scaled_dot_product_attention`` (replaced by :func:`simulated_sdpa`, a function-level rule: the
backend choice happens above the dispatcher; :func:`cuda_sdpa_backend` is PyTorch's choice):

* A boolean ``attn_mask`` is first converted to a float mask of the query dtype (both targets).
* CUDA, no fused kernel possible (inputs not 4-D, or a last dimension that is not contiguous,
  the mask's included, or unaligned head dims with a mask): the **math** path, run op for op on
  the fake tensors: fp16/bf16 q, k, v upcast to float32, the score matrix materialized, then
  ``_safe_softmax`` (below).
* CUDA, sm90+, fp16/bf16, head dims multiples of 8 up to 128: **cuDNN** attention: the output
  and three small seed/offset tensors (no log-sum-exp under ``no_grad``).
* CUDA, fp16/bf16, no mask, head dim <= 256: **flash attention**. ``q``, ``k``, ``v`` are padded to
  a head dim multiple of 8 (copies, only when not already a multiple), the output is allocated
  ``(B, Lq, H, Dv_padded)`` plus a float32 log-sum-exp ``(B, H, Lq)`` and the RNG state; the
  padded output stays alive behind the sliced view that is returned. A launch too small to fill
  the GPU splits the keys (FlashAttention-2's ``num_splits_heuristic``, from the GPU's SM count)
  and allocates float32 partial outputs and log-sum-exps per split for the kernel's duration.
* CUDA otherwise (float32, or a mask): **memory-efficient attention**: the output ``(B, Lq, H, Dv)``;
  the log-sum-exp is only computed when autograd needs it (never under ``no_grad``); a mask whose
  last dim is not a multiple of 16 is copied into an aligned buffer.
* CPU: the **CPU flash kernel** (``_scaled_dot_product_flash_attention_for_cpu``): output
  ``(B, Lq, H, Dv)``, float32 log-sum-exp ``(B, Lq, H)``, and per thread a float32 tile of
  ``qSplit * kvSplit + 2 * qSplit + qSplit * Dv`` elements (``qSplit`` 256 / 64 / 32 for query
  lengths >= 768 / >= 192 / shorter, ``kvSplit`` 512, both capped by the lengths) plus, for
  fp16/bf16, ``qSplit * kvSplit`` elements of the input dtype.
* Only the math path materializes an ``Lq x Lk`` score matrix.

The CUDA choices and buffers were checked op by op against ``torch.cuda.memory_allocated`` on an
H200 (torch 2.11): the math path within 512 bytes, flash with split-KV exactly
(``tests/offload/test_simulate.py``). :func:`cuda_traits` supplies the SM count and compute
capability (this machine's GPU, else an H100/H200's).

``_safe_softmax`` (the math path's softmax): the output plus a boolean mask of the input's size
and its per-row reduction, for the kernel's duration.

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

import functools
import math
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

Target = Literal["cuda", "cpu"]
_TORCH_VERSION = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])

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


@functools.lru_cache(maxsize=1)
def cuda_traits() -> tuple[tuple[int, int], int]:
    """(compute capability, multiprocessor count) of the CUDA device the plan is for: this
    machine's GPU when it has one, else an H100/H200 (sm90, 132 SMs), the cards the CUDA rules
    were measured on."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return (props.major, props.minor), props.multi_processor_count
    return (9, 0), 132


def _flash_num_splits(batch_heads: int, q_len: int, k_len: int, head_dim: int,
                      sm_count: int) -> int:
    """FlashAttention-2's split-KV heuristic (``num_splits_heuristic``, flash_api.cpp): a launch
    too small to fill the GPU splits the keys, with float32 partial results per split."""
    block_n = 256 if head_dim <= 64 else 128 if head_dim <= 128 else 64
    n_blocks = -(-k_len // block_n)
    work = batch_heads * -(-q_len // 64)
    if work >= 0.8 * sm_count:
        return 1
    max_splits = min(128, sm_count, n_blocks)

    def eligible(splits: int) -> bool:
        return splits == 1 or -(-n_blocks // splits) != -(-n_blocks // (splits - 1))

    efficiency = {}
    for splits in range(1, max_splits + 1):
        if eligible(splits):
            waves = work * splits / sm_count
            efficiency[splits] = waves / math.ceil(waves)
    best = max(efficiency.values(), default=0.0)
    return next((n for n, e in efficiency.items() if e >= 0.85 * best), 1)


def _last_dim_contiguous(t: torch.Tensor) -> bool:
    return t.stride(-1) == 1 or t.shape[-1] == 1


def cuda_sdpa_backend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attn_mask: torch.Tensor | None) -> str:
    """The kernel PyTorch's CUDA SDPA picks (``select_sdp_backend``, sdp_utils.cpp), as far as
    memory goes: ``"cudnn"``, ``"flash"``, ``"efficient"`` or ``"math"``.

    Every fused kernel needs 4-D inputs whose last dimension is contiguous, the mask's too (a
    mask built from a permuted position bias, as T5 encoders in some transformers versions
    make it, has a strided last dimension and sends the call to the math path). cuDNN is
    first on sm90+ for fp16/bf16 with head dims that are multiples of 8 up to 128 (seen on
    torch 2.11, H200); flash takes fp16/bf16 without a mask (head dim <= 256); the
    memory-efficient kernel everything else whose head dims are 16-byte aligned."""
    capability, _ = cuda_traits()
    tensors = [query, key, value] + ([attn_mask] if attn_mask is not None else [])
    if query.dim() != 4 or not all(_last_dim_contiguous(t) for t in tensors):
        return "math"
    low_precision = query.dtype in (torch.float16, torch.bfloat16)
    if not low_precision and query.dtype != torch.float32:
        return "math"
    head_dim, v_dim = query.shape[-1], value.shape[-1]
    if (low_precision and capability >= (9, 0) and head_dim == v_dim and head_dim % 8 == 0
            and head_dim <= 128 and torch.backends.cuda.cudnn_sdp_enabled()
            and _TORCH_VERSION >= (2, 9)):
        return "cudnn"
    if low_precision and attn_mask is None and head_dim <= 256:
        return "flash"
    alignment = 16 // query.element_size()
    if head_dim % alignment == 0 and v_dim % alignment == 0:
        return "efficient"
    return "math"


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
    if target == "cuda":
        backend = cuda_sdpa_backend(query, key, value, attn_mask)
        if backend == "math":
            # ATen's composite math path, op for op (fp16/bf16 inputs are upcast to float32 and
            # the score matrix is materialized): its decomposition runs on the fake tensors.
            return torch.ops.aten._scaled_dot_product_attention_math(
                query, key, value, attn_mask, dropout_p, is_causal, None, scale=scale,
                enable_gqa=enable_gqa)[0]
        if backend == "cudnn":  # the output and three small device tensors (seed, offset)
            keep += [_empty((1,), query, torch.int64) for _ in range(3)]
            return _empty((*outer, q_len, heads, dv), query).transpose(-2, -3)
        if backend == "flash":
            head_dim = query.shape[-1]
            padded = _pad_to(head_dim, 8)
            if padded != head_dim:
                keep += [_empty((*t.shape[:-1], padded), t) for t in (query, key, value)]
            dv_pad = _pad_to(dv, 8)
            out = _empty((*outer, q_len, heads, dv_pad), query).transpose(-2, -3)
            keep.append(_empty((*outer, heads, q_len), query, torch.float32))
            keep += [_empty((2,), query, torch.int64), _empty((1,), query, torch.int64)]  # RNG
            batch_heads = math.prod(outer) * heads
            splits = _flash_num_splits(batch_heads, q_len, k_len, padded, cuda_traits()[1])
            if splits > 1:  # split-KV partial results, freed when the kernel returns
                rounded = _pad_to(padded, 32 if padded <= 128 else 64)
                scratch = [_empty((splits, batch_heads, q_len), query, torch.float32),
                           _empty((splits, batch_heads, q_len, rounded), query, torch.float32)]
                del scratch
            return out[..., :dv]
        if attn_mask is not None and attn_mask.shape[-1] % 16:
            keep.append(_empty((*attn_mask.shape[:-1], _pad_to(attn_mask.shape[-1], 16)),
                               attn_mask))
        return _empty((*outer, q_len, heads, dv), query).transpose(-2, -3)
    # CPU flash attention kernel
    low_precision = query.dtype in (torch.float16, torch.bfloat16)
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
        if func is aten._safe_softmax.default:
            # softmax, plus a boolean "-inf" mask of the input's size and its per-row reduction
            # (fully masked rows become zeros), both freed when the kernel returns
            x, dim = args[0], args[1]
            rows = list(x.shape)
            rows[dim] = 1
            return _with_buffers(func, args, kwargs, lambda out: [(tuple(x.shape), torch.bool),
                                                                  (tuple(rows), torch.bool)])
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
