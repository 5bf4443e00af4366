"""Tiny, offline pipelines with deterministic random weights.

Why: the default render, the samples and every test must run on a laptop CPU with no network and no
hub. The components are real diffusers / transformers classes built from small configs, so the code
paths exercised (``__call__``, ``vae.decode``, ``save_pretrained`` / ``from_pretrained``) are the
ones a user with a real checkpoint hits; only the sizes and the weight values differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .errors import InvalidOptions, UnsupportedModel
def tiny_tokenizer(model_max_length: int = 64):
    """A byte-level tokenizer built in code: every UTF-8 byte is a token, no merges.

    It tokenizes any prompt without a vocabulary download, and round-trips through
    ``save_pretrained`` / ``from_pretrained`` as an ordinary ``PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def tiny_wan_vae(seed: int = 0, *, patch_size: int | None = None):
    """A small ``AutoencoderKLWan`` (Wan 2.1 layout; ``patch_size=2`` gives the Wan 2.2 layout)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    if patch_size is not None:
        # Wan 2.2's VAE: residual blocks, 12-channel patchified pixels, spatial factor 16.
        kwargs.update(is_residual=True, patch_size=patch_size, in_channels=12, out_channels=12,
                      scale_factor_spatial=16, z_dim=16, decoder_base_dim=8)
    return AutoencoderKLWan(**kwargs).eval()


def _tiny_t5(seed: int, d_model: int = 32):
    """A two-layer T5 encoder over the byte tokenizer's 260 ids (CogVideoX, LTX, Mochi)."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(
        vocab_size=260, d_model=d_model, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0)).eval()


def _tiny_clip_text(seed: int, hidden: int = 32, projection: int | None = None):
    """A two-layer CLIP text encoder over the byte tokenizer (AnimateDiff, HunyuanVideo)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=260, hidden_size=hidden, intermediate_size=37,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                            pad_token_id=0, bos_token_id=0, eos_token_id=1,
                            projection_dim=projection or hidden)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(config).eval()


def _wan(seed: int):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    vae = tiny_wan_vae(seed)
    torch.manual_seed(seed + 1)
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=260, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, relative_attention_max_distance=16,
                   feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
                   decoder_start_token_id=0)
    ).eval()
    torch.manual_seed(seed + 2)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
        out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=6,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=1024,
    ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return WanPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder,
                       transformer=transformer, vae=vae, scheduler=scheduler)


def _wan_i2v(seed: int):
    """Wan 2.2 I2V layout: two transformers (high / low noise, switched at ``boundary_ratio``),
    the image encoded by the VAE and concatenated with a mask (36 input channels), no CLIP."""
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

    base = _wan(seed)

    def transformer(offset: int):
        torch.manual_seed(seed + offset)
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36,
            out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=1024).eval()

    return WanImageToVideoPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder,
                                   vae=base.vae, scheduler=base.scheduler,
                                   transformer=transformer(2), transformer_2=transformer(3),
                                   boundary_ratio=0.5)


def _cogvideox(seed: int):
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline,
                           CogVideoXTransformer3DModel)

    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=2,
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), temporal_compression_ratio=4).eval()
    torch.manual_seed(seed + 2)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=2, sample_width=12, sample_height=8,
        sample_frames=17, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=226,
    ).eval()
    return CogVideoXPipeline(tokenizer=tiny_tokenizer(226), text_encoder=_tiny_t5(seed + 1),
                             vae=vae, transformer=transformer, scheduler=CogVideoXDDIMScheduler())


def _ltx(seed: int):
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline,
                           LTXVideoTransformer3DModel)

    torch.manual_seed(seed)
    # x8 time, x32 space (patch 4 x three x2 upsamplers), timestep-conditioned decoder with
    # injected noise: the LTX-Video 0.9.1+ decoder design.
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(True, True, True, True, False), upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4, timestep_conditioning=True, patch_size=4, patch_size_t=1,
        encoder_causal=True, decoder_causal=False).eval()
    with torch.no_grad():  # diffusers starts the noise scales at zero; make the noise visible
        for name, p in vae.decoder.named_parameters():
            if "per_channel_scale" in name:
                p.fill_(0.1)
    torch.manual_seed(seed + 2)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2,
        attention_head_dim=8, cross_attention_dim=16, num_layers=2, caption_channels=32).eval()
    return LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                       text_encoder=_tiny_t5(seed + 1), tokenizer=tiny_tokenizer(128),
                       transformer=transformer)


def _mochi(seed: int):
    from diffusers import (AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline,
                           MochiTransformer3DModel)

    torch.manual_seed(seed)
    vae = AutoencoderKLMochi(latent_channels=12, out_channels=3,
                             encoder_block_out_channels=(32, 32, 32, 32),
                             decoder_block_out_channels=(32, 32, 32, 32),
                             layers_per_block=(1, 1, 1, 1, 1)).eval()
    torch.manual_seed(seed + 2)
    transformer = MochiTransformer3DModel(
        patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2,
        pooled_projection_dim=16, in_channels=12, out_channels=None, qk_norm="rms_norm",
        text_embed_dim=32, time_embed_dim=4, activation_fn="swiglu", max_sequence_length=64).eval()
    return MochiPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                         text_encoder=_tiny_t5(seed + 1), tokenizer=tiny_tokenizer(64),
                         transformer=transformer)


def _hunyuanvideo(seed: int):
    from diffusers import (AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler,
                           HunyuanVideoPipeline, HunyuanVideoTransformer3DModel)
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
        spatial_compression_ratio=8, temporal_compression_ratio=4).eval()
    torch.manual_seed(seed + 1)
    llama = LlamaModel(LlamaConfig(vocab_size=260, hidden_size=16, intermediate_size=37,
                                   num_hidden_layers=3, num_attention_heads=4,
                                   num_key_value_heads=4, max_position_embeddings=512,
                                   pad_token_id=0, bos_token_id=0, eos_token_id=1)).eval()
    torch.manual_seed(seed + 2)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10,
        num_layers=1, num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1,
        guidance_embeds=True, text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4)
    ).eval()
    return HunyuanVideoPipeline(text_encoder=llama, tokenizer=tiny_tokenizer(512),
                                transformer=transformer, vae=vae,
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                text_encoder_2=_tiny_clip_text(seed + 3, hidden=8),
                                tokenizer_2=tiny_tokenizer(77))


def _hunyuanvideo15(seed: int):
    """HunyuanVideo 1.5 T2V: Qwen2.5-VL text model (chat template), ByT5 glyph encoder, the
    fully causal 1.5 VAE."""
    from diffusers import (AutoencoderKLHunyuanVideo15, ClassifierFreeGuidance,
                           FlowMatchEulerDiscreteScheduler, HunyuanVideo15Pipeline,
                           HunyuanVideo15Transformer3DModel)
    from transformers import (ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel, T5Config,
                              T5EncoderModel)

    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo15(latent_channels=4, block_out_channels=(8,) * 5,
                                      layers_per_block=1).eval()
    torch.manual_seed(seed + 1)
    qwen = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
        vocab_size=260, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=0, eos_token_id=1, pad_token_id=0,
        rope_scaling={"type": "default", "mrope_section": [1, 1, 2], "rope_type": "default"})).eval()
    tokenizer = tiny_tokenizer(1200)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
                               "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    torch.manual_seed(seed + 2)
    byt5 = T5EncoderModel(T5Config(vocab_size=384, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                   num_heads=2, relative_attention_num_buckets=8,
                                   feed_forward_proj="gated-gelu")).eval()
    torch.manual_seed(seed + 3)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=2 * 4 + 1, out_channels=4, num_attention_heads=2, attention_head_dim=8,
        num_layers=1, num_refiner_layers=1, text_embed_dim=16, text_embed_2_dim=16,
        image_embed_dim=12, rope_axes_dim=(2, 2, 4), target_size=64, task_type="t2v").eval()
    return HunyuanVideo15Pipeline(
        text_encoder=qwen, tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=byt5,
        tokenizer_2=ByT5Tokenizer(), guider=ClassifierFreeGuidance(guidance_scale=6.0))


def _svd(seed: int):
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler,
                           StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel)
    from transformers import (CLIPImageProcessor, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 32, 32), in_channels=3, out_channels=3, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, latent_channels=4).eval()
    torch.manual_seed(seed + 1)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4,
        image_size=224, intermediate_size=37, patch_size=32)).eval()
    torch.manual_seed(seed + 2)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=8,
        out_channels=4, down_block_types=("CrossAttnDownBlockSpatioTemporal",
                                          "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32, num_attention_heads=(2, 4), transformer_layers_per_block=1,
        projection_class_embeddings_input_dim=3 * 8, addition_time_embed_dim=8).eval()
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                       beta_end=0.012, interpolation_type="linear",
                                       num_train_timesteps=1000, prediction_type="v_prediction",
                                       sigma_max=700.0, sigma_min=0.002, steps_offset=1,
                                       timestep_spacing="leading", timestep_type="continuous",
                                       use_karras_sigmas=True)
    return StableVideoDiffusionPipeline(
        vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224))


def _animatediff(seed: int):
    from diffusers import (AnimateDiffPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter,
                           UNet2DConditionModel)

    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=(8, 8), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                        norm_num_groups=4).eval()
    torch.manual_seed(seed + 2)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        norm_num_groups=4).eval()
    torch.manual_seed(seed + 3)
    motion_adapter = MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=1,
                                   motion_norm_num_groups=4, motion_num_attention_heads=2,
                                   motion_max_seq_length=64).eval()
    return AnimateDiffPipeline(vae=vae, text_encoder=_tiny_clip_text(seed + 1),
                               tokenizer=tiny_tokenizer(77), unet=unet,
                               motion_adapter=motion_adapter,
                               scheduler=DDIMScheduler(beta_schedule="linear",
                                                       clip_sample=False, steps_offset=1))


#: the diffusers pipeline class each tiny family builds (known without building it).
_CLASSES = {"wan": "WanPipeline", "wan-i2v": "WanImageToVideoPipeline", "cogvideox": "CogVideoXPipeline", "ltx": "LTXPipeline",
            "mochi": "MochiPipeline", "hunyuanvideo": "HunyuanVideoPipeline",
            "hunyuanvideo15": "HunyuanVideo15Pipeline",
            "svd": "StableVideoDiffusionPipeline", "animatediff": "AnimateDiffPipeline"}


def tiny_pipeline_class(family: str) -> str:
    """The pipeline class name of tiny ``family`` (a clear error for an unknown family)."""
    if family not in _CLASSES:
        raise UnsupportedModel(f"unknown tiny pipeline family {family!r}; available: "
                         f"{', '.join(_CLASSES)}")
    return _CLASSES[family]


_BUILDERS = {"wan": _wan, "wan-i2v": _wan_i2v, "cogvideox": _cogvideox, "ltx": _ltx,
             "mochi": _mochi, "hunyuanvideo": _hunyuanvideo, "hunyuanvideo15": _hunyuanvideo15,
             "svd": _svd, "animatediff": _animatediff}
SUPPORTED_TINY_FAMILIES = tuple(_BUILDERS)


def tiny_pipeline(family: str = "wan", seed: int = 0):
    """Return a real diffusers pipeline of ``family`` with tiny, seeded random weights.

    Families: ``"wan"`` (``WanPipeline``: the default render; a 17-frame 64x96 clip with 2 steps
    takes about a second on a CPU), ``"wan-i2v"`` (Wan 2.2 I2V layout: two transformers),
    ``"cogvideox"``, ``"ltx"`` (timestep-conditioned decoder),
    ``"mochi"``, ``"hunyuanvideo"``, ``"hunyuanvideo15"``, ``"svd"`` (image-to-video) and ``"animatediff"`` (image VAE).
    Text encoders are real transformers classes over a byte-level tokenizer; nothing downloads.
    """
    builder = _BUILDERS.get(family)
    if builder is None:
        raise UnsupportedModel(
            f"unknown tiny pipeline family {family!r}; available: {', '.join(SUPPORTED_TINY_FAMILIES)}"
        )
    pipe = builder(seed)
    pipe._vidmem_model_id = tiny_model_id(family, seed)
    return pipe


TINY_PREFIX = "vidmem-tiny:"


def tiny_model_id(family: str, seed: int) -> str:
    """The model id a latent checkpoint records for a tiny pipeline (no path exists for it)."""
    return f"{TINY_PREFIX}{family}:{seed}"


def parse_tiny_model_id(model_id: str) -> tuple[str, int] | None:
    """``"vidmem-tiny:wan:0"`` -> ``("wan", 0)``; ``None`` for anything else."""
    if not model_id.startswith(TINY_PREFIX):
        return None
    family, _, seed = model_id[len(TINY_PREFIX):].partition(":")
    example = f"{TINY_PREFIX}{family or 'wan'}:0"
    if family not in _BUILDERS:
        raise UnsupportedModel(f"{model_id!r}: unknown tiny pipeline family {family!r}; available: "
                         f"{', '.join(SUPPORTED_TINY_FAMILIES)} (e.g. {example})")
    if seed and not seed.isdigit():
        raise InvalidOptions(f"{model_id!r}: the seed must be a whole number, e.g. {example}")
    return family, int(seed or 0)


def save_tiny_pipeline(directory: str | Path, family: str = "wan", seed: int = 0) -> Path:
    """Build the tiny pipeline and ``save_pretrained`` it, for tests of the real loading path."""
    directory = Path(directory)
    tiny_pipeline(family, seed).save_pretrained(directory)
    return directory
