"""vidmem.feasibility: the predictions are checked against real objects (saved checkpoints,
decoded chunks, renders), and each transformer limit is proven by diffusers itself: the largest
accepted count runs the forward, the next one fails the way issue #26 reported."""

from __future__ import annotations

import json
import os

import pytest
import torch

from vidmem import feasibility as fz
from vidmem.checkpoint import capture_rng, save_checkpoint
from vidmem.errors import BudgetTooSmall, InvalidOptions
from vidmem.memory import format_bytes
from vidmem.pipelines import DecodeInput, clip_latents


# --- checkpoint size --------------------------------------------------------------------------
@pytest.mark.parametrize("shape,dtype,kwarg", [
    ((1, 16, 3, 8, 12), torch.float32, None),
    ((1, 16, 21, 60, 104), torch.bfloat16, None),
    ((1, 128, 4, 16, 24), torch.float32, torch.tensor([0.05])),  # LTX: a timestep tensor
])
def test_checkpoint_bytes_matches_a_saved_checkpoint(tmp_path, shape, dtype, kwarg):
    latents = torch.randn(shape).to(dtype)
    kwargs = {} if kwarg is None else {"timestep": kwarg}
    model = str(tmp_path / "models" / "Wan-AI" / "Wan2.1-T2V-1.3B-Diffusers")
    path = save_checkpoint(tmp_path / "c.latents.safetensors", DecodeInput(latents, kwargs),
                           model=model, family="wan", fps=16.0, frames=81,
                           rng_states=capture_rng(), vae_dtype=torch.float32)
    size = path.stat().st_size
    kwarg_bytes = 0 if kwarg is None else kwarg.numel() * kwarg.element_size()
    predicted = fz.checkpoint_bytes(latents.shape, dtype, kwarg_bytes,
                                    cuda_rng="cuda" in capture_rng(), model=model)
    # an upper bound (it is what the disk must hold), within a few KiB of the real file
    assert size <= predicted <= size + 4096, (size, predicted)
    # and far closer than the latents alone, which is what render() reserved
    assert predicted - size < size - latents.numel() * latents.element_size()


def test_render_checkpoint_within_prediction_and_small_disk_rule(tmp_path, tiny_pipe):
    """The issue's case: a 9-frame 64x96 clip. Its real checkpoint and video are well inside the
    new rule's reservation, which a 2 MiB disk can hold (the fixed 16 MiB margin refused it)."""
    from vidmem.rendering import render

    out = tmp_path / "clip.mp4"
    render(tiny_pipe, out, keep_latents=True, prompt="a", num_frames=9, height=64, width=96,
           num_inference_steps=1)
    ckpt = tmp_path / "clip.latents.safetensors"
    buffers = fz.estimate_render_buffers(tiny_pipe.vae, 9, 64, 96)
    assert ckpt.stat().st_size <= buffers.checkpoint <= ckpt.stat().st_size + 4096
    assert out.stat().st_size <= buffers.disk_margin  # the whole video fits the margin
    assert buffers.disk_bytes < 2 << 20
    from vidmem.outputs import FREE_SPACE_MARGIN_BYTES
    assert buffers.latents + FREE_SPACE_MARGIN_BYTES > 2 << 20  # what the old rule asked


@pytest.mark.parametrize("lossless", [False, True])
def test_disk_margin_bounds_the_first_chunk(tmp_path, tiny_pipe, lossless):
    """The margin bounds the video's first chunk, lossless too (the tiny model's frames are
    noise-like, the worst case for an encoder): a 13-frame clip is one 16-frame chunk."""
    from vidmem.rendering import render

    out = tmp_path / "clip.mp4"
    render(tiny_pipe, out, checkpoint=False, lossless=lossless, prompt="a", num_frames=13,
           height=64, width=96, num_inference_steps=1, chunk_frames=16)
    buffers = fz.estimate_render_buffers(tiny_pipe.vae, 13, 64, 96, chunk_frames=16)
    assert buffers.chunk_frames == 13  # one chunk: the file is the first chunk
    assert out.stat().st_size <= buffers.disk_margin - fz.MIN_DISK_MARGIN_BYTES
    assert fz.disk_margin_bytes(2, 64, 96) > fz.disk_margin_bytes(1, 64, 96)  # it scales


# --- the render's buffers ---------------------------------------------------------------------
def _decoded(vae, latents, **options):
    from vidmem.decode.stream import decode_latents

    return list(decode_latents(vae, latents, **options))


@pytest.mark.parametrize("frames,options", [(5, {}), (5, {"tile_size": 32, "tile_overlap": 16}),
                                            (9, {"chunk_frames": 4})])
def test_buffers_match_the_real_decode(tiny_pipe, frames, options):
    vae = tiny_pipe.vae
    height, width = 32, 64
    latents = torch.randn(clip_latents(vae, frames, height, width).shape)
    buffers = fz.estimate_render_buffers(vae, frames, height, width, **options)
    assert buffers.latent_shape == tuple(latents.shape)
    assert buffers.latents == latents.numel() * latents.element_size()
    with torch.no_grad():
        uint8 = _decoded(vae, latents, **options)
        floats = _decoded(vae, latents, output_type="pt", **options)
    assert sum(c.shape[0] for c in uint8) == buffers.frames == frames
    assert max(c.numel() * c.element_size() for c in uint8) == buffers.chunk_uint8
    biggest_float = max(c.numel() * c.element_size() for c in floats)
    tiled = "tile_size" in options
    assert buffers.tile_count > 1 if tiled else buffers.tile_count == 1
    # the float32 chunk buffer (cache family: the window is the chunk), plus the blend weights
    assert buffers.chunk_float == biggest_float + (height * width * 4 if tiled else 0)
    assert (buffers.tiles > 0) == tiled
    assert buffers.writer_queue == 3 * buffers.chunk_uint8  # queue_size 2 + one encoding
    assert buffers.host_bytes == sum(buffers.host_parts.values()) >= buffers.latents


def test_buffers_from_a_meta_skeleton_equal_the_loaded_vae(tmp_path, tiny_pipe):
    from vidmem.loading import vae_skeleton
    from vidmem.tiny import save_tiny_pipeline

    model = save_tiny_pipeline(tmp_path / "wan")
    skeleton = vae_skeleton(str(model))
    assert next(skeleton.parameters()).device.type == "meta"
    assert (fz.estimate_render_buffers(skeleton, 33, 480, 832)
            == fz.estimate_render_buffers(tiny_pipe.vae, 33, 480, 832))


def test_cuda_decode_puts_the_chunk_on_the_device(tiny_pipe):
    cpu = fz.estimate_render_buffers(tiny_pipe.vae, 17, 480, 832)
    gpu = fz.estimate_render_buffers(tiny_pipe.vae, 17, 480, 832, decode_device="cuda")
    assert "one decoded chunk" in cpu.host_parts and not cpu.device_parts
    assert gpu.device_parts["one decoded chunk"] == cpu.chunk_float
    assert "one decoded chunk" not in gpu.host_parts
    # the CUDA RNG state's bytes, and its entry in the header
    assert fz.CUDA_RNG_STATE_BYTES < gpu.checkpoint - cpu.checkpoint <= fz.CUDA_RNG_STATE_BYTES + 128


def test_impossible_size_is_refused_with_the_numbers(tiny_pipe):
    buffers = fz.estimate_render_buffers(tiny_pipe.vae, 9, 65536, 65536)
    available = fz.available_host_bytes()
    assert available is not None and buffers.host_bytes > available
    with pytest.raises(BudgetTooSmall) as info:
        fz.check_render_fits(buffers)
    message = str(info.value)
    assert "a 65536x65536 clip of 9 frames" in message
    assert format_bytes(buffers.host_bytes) in message
    assert format_bytes(buffers.latents) in message
    assert "\n" not in message
    assert isinstance(info.value, InvalidOptions)  # the CLI's "user can fix" status
    # a small clip fits this machine
    fz.check_render_fits(fz.estimate_render_buffers(tiny_pipe.vae, 9, 64, 96))


def test_device_budget_is_checked_only_when_given(tiny_pipe):
    gpu = fz.estimate_render_buffers(tiny_pipe.vae, 17, 480, 832, decode_device="cuda")
    huge = 1 << 50
    fz.check_render_fits(gpu, host_available=huge)
    fz.check_render_fits(gpu, host_available=huge, device_free=gpu.device_bytes)
    with pytest.raises(BudgetTooSmall, match="of device memory") as info:
        fz.check_render_fits(gpu, host_available=huge, device_free=gpu.device_bytes - 1)
    assert format_bytes(gpu.device_bytes) in str(info.value)
    with pytest.raises(BudgetTooSmall, match="of host memory"):
        fz.check_render_fits(gpu, host_available=gpu.host_bytes - 1)


def test_available_host_bytes_is_plausible():
    available = fz.available_host_bytes()
    assert available is not None
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < available <= total


def test_bad_sizes_are_refused(tiny_pipe):
    with pytest.raises(InvalidOptions):
        fz.estimate_render_buffers(tiny_pipe.vae, 0, 64, 96)


# --- the transformer's reach: Wan -------------------------------------------------------------
def _wan_forward(transformer, latent_frames, latent_h=2, latent_w=2):
    hidden = torch.randn(1, transformer.config.in_channels, latent_frames, latent_h, latent_w)
    text = torch.randn(1, 4, transformer.config.text_dim)
    with torch.no_grad():
        return transformer(hidden, timestep=torch.tensor([500]), encoder_hidden_states=text,
                           return_dict=False)[0]


def test_wan_frame_limit_is_where_diffusers_fails(tiny_pipe):
    """The issue's case: 4101 frames at 16x16. The largest count frames_error accepts runs the
    transformer; the next valid count fails inside diffusers with the reported error."""
    k = tiny_pipe.vae_scale_factor_temporal
    most = fz.max_frames(tiny_pipe, temporal_factor=k)
    assert fz.frames_error(most, tiny_pipe, temporal_factor=k) is None
    message = fz.frames_error(4101, tiny_pipe, temporal_factor=k)
    assert message is not None and f"at most {most} frames" in message
    assert "rope_max_seq_len=1024" in message and "1026 latent frames" in message
    assert fz.frames_error(most + k, tiny_pipe, temporal_factor=k) is not None

    transformer = tiny_pipe.transformer
    at_limit = fz.latent_frames_for(most, k)
    out = _wan_forward(transformer, at_limit)
    assert out.shape[2] == at_limit
    with pytest.raises(RuntimeError, match=r"shape '\[%d, 1, 1, -1\]' is invalid"
                       % fz.latent_frames_for(most + k, k)):
        _wan_forward(transformer, fz.latent_frames_for(most + k, k))


def test_wan_pipeline_fails_past_the_limit_with_the_cryptic_error(tiny_pipe):
    """The full pipeline, one step, 16x16: the reported failure, and the limit running."""
    k = tiny_pipe.vae_scale_factor_temporal
    most = fz.max_frames(tiny_pipe.transformer.config, class_name="WanTransformer3DModel",
                         temporal_factor=k)
    call = dict(prompt="a", height=16, width=16, num_inference_steps=1, output_type="latent")
    with pytest.raises(RuntimeError, match=r"shape '\[1026, 1, 1, -1\]' is invalid for input "
                                           r"of size 4096"):
        tiny_pipe(num_frames=4101, **call)
    latents = tiny_pipe(num_frames=most, **call).frames
    assert latents.shape[2] == fz.latent_frames_for(most, k)


def test_wan_limit_scales_with_the_temporal_patch():
    """Wan 2.2-style temporal patching (p_t = 2): the table counts patches, not latent frames.
    Proven on a transformer built from the same config dict the function reads."""
    from diffusers import WanTransformer3DModel

    config = dict(patch_size=(2, 2, 2), num_attention_heads=2, attention_head_dim=12,
                  in_channels=16, out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32,
                  num_layers=1, rope_max_seq_len=64)
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**config).eval()
    limit = fz.frames_limit(transformer)
    assert limit.latent_frames == 64 * 2
    assert fz.frames_limit(dict(config)).latent_frames == limit.latent_frames  # a bare dict
    assert _wan_forward(transformer, limit.latent_frames).shape[2] == limit.latent_frames
    with pytest.raises(RuntimeError, match="is invalid for input of size"):
        _wan_forward(transformer, limit.latent_frames + 2)


def test_wan_limit_from_config_json(tmp_path, tiny_pipe):
    tiny_pipe.transformer.save_config(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "WanTransformer3DModel"
    assert fz.frames_limit(config) == fz.frames_limit(tiny_pipe.transformer)


def test_wan_size_limit_is_where_diffusers_fails(tiny_pipe):
    transformer = tiny_pipe.transformer
    rows = transformer.config.rope_max_seq_len
    p_h = transformer.config.patch_size[1]
    sf = tiny_pipe.vae_scale_factor_spatial
    most = rows * p_h * sf
    assert fz.size_error(most, 16, transformer) is None
    message = fz.size_error(most + p_h * sf, 16, transformer)
    assert message is not None and f"at most {most} px" in message and "--height" in message
    assert _wan_forward(transformer, 1, most // sf, 2).shape[3] == most // sf
    with pytest.raises(RuntimeError, match="is invalid for input of size"):
        _wan_forward(transformer, 1, (most + p_h * sf) // sf, 2)


# --- the other families -------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["ltx", "hunyuanvideo", "mochi", "cogvideox"])
def test_families_without_a_frame_limit(family):
    from vidmem import tiny_pipeline

    pipe = tiny_pipeline(family)
    assert fz.frames_limit(pipe) is None
    assert fz.max_frames(pipe) is None
    assert fz.frames_error(100_001, pipe) is None


def _cogvideox_learned():
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=1, sample_width=12, sample_height=8,
        sample_frames=17, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=8,
        use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True).eval()


def _cog_forward(transformer, latent_frames, h, w):
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    p = transformer.config.patch_size
    rope = get_3d_rotary_pos_embed(embed_dim=transformer.config.attention_head_dim,
                                   crops_coords=((0, 0), (h // p, w // p)),
                                   grid_size=(h // p, w // p), temporal_size=latent_frames)
    hidden = torch.randn(1, latent_frames, 4, h, w)
    text = torch.randn(1, transformer.config.max_text_seq_length, 32)
    with torch.no_grad():
        return transformer(hidden, text, timestep=torch.tensor([500]),
                           image_rotary_emb=rope, return_dict=False)[0]


def test_cogvideox_learned_embeddings_fix_the_size_not_the_frames():
    transformer = _cogvideox_learned()
    sh, sw = transformer.config.sample_height, transformer.config.sample_width
    assert fz.size_error(sh * 8, sw * 8, transformer) is None
    message = fz.size_error(sh * 8 + 16, sw * 8, transformer)
    assert message is not None and f"{sw * 8}x{sh * 8} only" in message
    assert fz.frames_limit(transformer) is None
    sample_latents = (transformer.config.sample_frames - 1) // 4 + 1
    # more frames than it was trained at: diffusers recomputes the table and runs
    assert _cog_forward(transformer, 3 * sample_latents, sh, sw).shape[1] == 3 * sample_latents
    with pytest.raises(ValueError, match="not possible to generate videos at a different"):
        _cog_forward(transformer, sample_latents, sh + 2, sw)
