"""The memory simulator alone: its accounting, its attention rule, the one-block shortcut, and
real-shape numbers (CPU only, no weights)."""

import pytest
import torch

import vidmem
from vidmem.offload.simulate import (CUDA_CONTEXT_BYTES, identical_blocks, one_block_per_list,
                                     simulate_call)


@pytest.fixture(scope="module")
def wan():
    return vidmem.tiny_pipeline("wan", seed=0)


def wan_call(frames=5, h=8, w=12, dtype=torch.float32):
    return dict(hidden_states=torch.randn(1, 16, frames, h, w, dtype=dtype),
                timestep=torch.tensor([500]),
                encoder_hidden_states=torch.randn(1, 512, 32, dtype=dtype), return_dict=False)


def storage_bytes(value):
    from torch.utils._pytree import tree_leaves

    storages = {id(t.untyped_storage()): t.untyped_storage().nbytes()
                for t in tree_leaves(value) if isinstance(t, torch.Tensor)}
    return sum(storages.values())


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_live_bytes_return_to_the_output_size(wan, target):
    """After a forward, exactly the outputs are still counted: every temporary was freed."""
    result = simulate_call(wan.transformer, (), wan_call(), target=target, one_block=False)
    out = storage_bytes(result.output)
    assert out == 1 * 16 * 5 * 8 * 12 * 4  # the noise prediction, float32
    expected = out if target == "cpu" else -(-out // 512) * 512  # CUDA blocks of 512 bytes
    assert result.end_bytes == expected
    assert result.peak_bytes > 5 * result.end_bytes  # attention, FFN, norms came and went

    ids = torch.randint(0, 250, (1, 512))
    text = simulate_call(wan.text_encoder, (ids, torch.ones(1, 512, dtype=torch.long)),
                         target=target, one_block=False)
    hidden = text.output.last_hidden_state
    assert text.end_bytes >= hidden.numel() * hidden.element_size()
    assert text.end_bytes == storage_bytes(text.output) or target == "cuda"
    assert text.peak_bytes > text.end_bytes


def test_weights_and_inputs_are_not_counted_and_meta_modules_work(wan):
    """The module may hold real or meta weights; only what the forward allocates counts."""
    from accelerate import init_empty_weights

    from diffusers import WanTransformer3DModel

    real = simulate_call(wan.transformer, (), wan_call(), target="cpu")
    with init_empty_weights():
        meta = WanTransformer3DModel.from_config(wan.transformer.config)
    assert next(meta.parameters()).device.type == "meta"
    from_meta = simulate_call(meta, (), wan_call(), target="cpu")
    assert (from_meta.peak_bytes, from_meta.end_bytes) == (real.peak_bytes, real.end_bytes)
    assert all(p.device.type == "cpu" for p in wan.transformer.parameters())  # untouched


class _Attention(torch.nn.Module):
    def forward(self, q, k, v, mask=None):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                                scale=1.0)


@pytest.fixture
def hopper(monkeypatch):
    """The CUDA rules for an H100/H200 (sm90, 132 SMs), whatever GPU this machine has."""
    from vidmem.offload import kernel_rules

    monkeypatch.setattr(kernel_rules, "cuda_traits", lambda: ((9, 0), 132))


def test_attention_counts_output_and_logsumexp_never_the_score_matrix(hopper, monkeypatch):
    """One SDPA call on the CUDA target, bf16, 16k tokens: cuDNN (sm90) or flash (older GPUs)
    keep the output (flash: plus a float32 log-sum-exp), where a materialized score matrix would
    be 2 * 16384^2 bytes per head."""
    from vidmem.offload import kernel_rules

    b, h, n, d = 1, 8, 16384, 128
    q = torch.empty(b, h, n, d, dtype=torch.bfloat16, device="meta")
    out = b * h * n * d * 2
    result = simulate_call(_Attention(), (q, q, q), target="cuda")
    assert result.end_bytes == out
    assert result.peak_bytes == out + 3 * 512  # cuDNN: the output and its seed/offset tensors
    monkeypatch.setattr(kernel_rules, "cuda_traits", lambda: ((8, 0), 108))  # an A100: flash
    result = simulate_call(_Attention(), (q, q, q), target="cuda")
    assert result.peak_bytes == out + b * h * n * 4 + 2 * 512  # + log-sum-exp, RNG state
    assert result.peak_bytes < h * n * n * 2 / 100
    # float32 goes to the memory-efficient kernel: no log-sum-exp without autograd
    q32 = torch.empty(b, h, 1024, d, device="meta")
    assert simulate_call(_Attention(), (q32, q32, q32), target="cuda").peak_bytes == \
        h * 1024 * d * 4


# The numbers below were measured with torch.cuda.memory_allocated around each aten op on an
# NVIDIA H200 (torch 2.11, transformers 5.17; vidmem's GPU session of 2026-11-26,
# benchmarks/RESULTS.md "GPU"), for the same shapes, strides and dtypes.


def test_a_small_flash_attention_counts_its_split_kv_partials(hopper):
    """Wan's tiny transformer: head dim 12 (padded to 16 for flash), 2 heads, 864 tokens. Too
    few blocks to fill 132 SMs, so flash splits the keys 4 ways with float32 partial results:
    1,141,760 bytes at the peak on the H200 (pads, output, log-sum-exp, RNG state, partials)."""
    q = torch.empty(1, 864, 2, 12, dtype=torch.bfloat16, device="meta").permute(0, 2, 1, 3)
    result = simulate_call(_Attention(), (q, q, q), target="cuda")
    assert result.peak_bytes == 1_141_760


def test_a_strided_mask_sends_attention_to_the_math_path(hopper):
    """umt5-xxl's attention with a position-bias mask whose last dimension is strided (what
    transformers 5.17's T5 encoders pass): no fused kernel takes it, so PyTorch upcasts q, k, v
    to float32 and materializes the scores. Measured: 184,582,656 bytes above the inputs; a
    contiguous mask goes to cuDNN (output only)."""
    base = torch.empty(1, 512, 64, 64, dtype=torch.bfloat16, device="meta")
    q = base.transpose(1, 2)
    bias = torch.empty(512, 512, 64, dtype=torch.bfloat16, device="meta").permute(2, 0, 1)[None]
    math_path = simulate_call(_Attention(), (q, q, q, bias), target="cuda")
    assert abs(math_path.peak_bytes - 184_582_656) <= 1024
    contiguous = simulate_call(_Attention(), (q, q, q, bias.contiguous()), target="cuda")
    assert contiguous.peak_bytes == 64 * 512 * 64 * 2 + 3 * 512


def test_the_flash_split_heuristic_matches_flash_attention_2():
    from vidmem.offload.kernel_rules import _flash_num_splits

    assert _flash_num_splits(2, 864, 864, 16, 132) == 4  # the case above
    assert _flash_num_splits(8, 16384, 16384, 128, 132) == 1  # enough blocks to fill the GPU
    assert _flash_num_splits(1, 64, 4096, 64, 132) > 1


def five_layer_copy(module):
    """The same architecture with five layers, on the meta device (no weights)."""
    import copy

    from accelerate import init_empty_weights

    with init_empty_weights():
        if hasattr(module.config, "to_dict") and hasattr(module.config, "num_layers"):
            config = copy.deepcopy(module.config)  # transformers
            config.num_layers = 5
            return type(module)(config)
        return type(module).from_config({**dict(module.config), "num_layers": 5})


@pytest.mark.parametrize("family, component", [("wan", "transformer"), ("wan", "text_encoder"),
                                               ("cogvideox", "transformer"),
                                               ("cogvideox", "text_encoder"),
                                               ("ltx", "transformer")])
def test_one_block_equals_the_full_model(family, component):
    """Rule 6: cutting each list of repeated blocks to its representative prefix leaves the peak
    and the outputs unchanged (the blocks run one after another and free their temporaries).
    Each component at five layers, with the inputs its pipeline really passes."""
    pipe = vidmem.tiny_pipeline(family, seed=0)
    module = getattr(pipe, component)
    calls = []
    original = module.forward

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    module.forward = record
    try:
        pipe.set_progress_bar_config(disable=True)
        pipe("a", num_inference_steps=1, output_type="latent", num_frames=9, height=64, width=96)
    finally:
        del module.forward
    args, kwargs = calls[0]
    deep = five_layer_copy(module)
    full = simulate_call(deep, args, kwargs, target="cuda", one_block=False)
    one = simulate_call(deep, args, kwargs, target="cuda", one_block=True)
    assert (one.peak_bytes, one.end_bytes) == (full.peak_bytes, full.end_bytes)
    before = sum(1 for _ in deep.modules())
    with one_block_per_list(deep) as cut:
        assert list(cut.values()) == [5], "the list of repeated blocks was cut"
        assert sum(1 for _ in deep.modules()) < before
    assert sum(1 for _ in deep.modules()) == before  # restored


def test_one_block_equals_the_full_model_at_real_wan_shapes():
    """The same at real Wan 2.1 1.3B shapes (30 blocks, bf16, 17 frames of 240x416)."""
    from accelerate import init_empty_weights

    from diffusers import WanTransformer3DModel
    from vidmem.shapes import WAN21_TRANSFORMER

    with init_empty_weights():
        model = WanTransformer3DModel(**WAN21_TRANSFORMER["1.3B"]).to(torch.bfloat16)
    assert identical_blocks(model.blocks) and len(model.blocks) == 30
    call = dict(hidden_states=torch.empty(1, 16, 5, 30, 52, dtype=torch.bfloat16, device="meta"),
                timestep=torch.tensor([500]),
                encoder_hidden_states=torch.empty(1, 512, 4096, dtype=torch.bfloat16,
                                                  device="meta"), return_dict=False)
    full = simulate_call(model, (), call, target="cuda", one_block=False)
    one = simulate_call(model, (), call, target="cuda", one_block=True)
    assert one.peak_bytes == full.peak_bytes and one.end_bytes == full.end_bytes
    assert one.seconds < full.seconds


def test_wan14b_720p_transformer_pass_is_several_gib():
    """Wan 2.1 14B at 1280x720, 81 frames (75,600 tokens): one pass's activations are several
    GiB (an FFN intermediate alone is 2.1 GB), simulated in seconds from the config."""
    from accelerate import init_empty_weights

    from diffusers import WanTransformer3DModel
    from vidmem.shapes import WAN21_TRANSFORMER

    with init_empty_weights():
        model = WanTransformer3DModel(**WAN21_TRANSFORMER["14B"]).to(torch.bfloat16)
    tokens = 21 * 45 * 80
    assert tokens == 75_600
    call = dict(hidden_states=torch.empty(1, 16, 21, 90, 160, dtype=torch.bfloat16, device="meta"),
                timestep=torch.tensor([500]),
                encoder_hidden_states=torch.empty(1, 512, 4096, dtype=torch.bfloat16,
                                                  device="meta"), return_dict=False)
    result = simulate_call(model, (), call, target="cuda")
    ffn = tokens * 13824 * 2
    assert 2 * ffn < result.peak_bytes < 8 * 2**30
    assert result.peak_bytes > 4 * 2**30
    assert result.seconds < 30
    assert CUDA_CONTEXT_BYTES < result.peak_bytes
