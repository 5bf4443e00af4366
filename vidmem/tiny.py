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

SUPPORTED_TINY_FAMILIES = ("wan",)


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


def tiny_pipeline(family: str = "wan", seed: int = 0):
    """Return a real diffusers pipeline of ``family`` with tiny, seeded random weights.

    Supported: ``"wan"`` (``diffusers.WanPipeline``: Wan 2.1 transformer and VAE, UMT5 text
    encoder, byte-level tokenizer, flow-matching scheduler). Runs a 17-frame 64x96 clip with 2
    steps on a CPU in about a second.
    """
    if family != "wan":
        raise ValueError(
            f"unknown tiny pipeline family {family!r}; available: {', '.join(SUPPORTED_TINY_FAMILIES)}"
        )
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
    pipe = WanPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder,
                       transformer=transformer, vae=vae, scheduler=scheduler)
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
    return family, int(seed or 0)


def save_tiny_pipeline(directory: str | Path, family: str = "wan", seed: int = 0) -> Path:
    """Build the tiny pipeline and ``save_pretrained`` it, for tests of the real loading path."""
    directory = Path(directory)
    tiny_pipeline(family, seed).save_pretrained(directory)
    return directory
