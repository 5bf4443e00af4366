"""AnimateDiff (diffusers folder ``animatediff``): ``AnimateDiffPipeline``,
``AnimateDiffVideoToVideoPipeline`` and ``AnimateDiffControlNetPipeline``.

All three share the components of :func:`vidmem.tiny.tiny_pipeline` ``("animatediff")``: an
image ``AutoencoderKL`` (two blocks: x2 space, no time axis), a small ``UNet2DConditionModel``
that the pipelines turn into a ``UNetMotionModel`` with the ``MotionAdapter`` at construction
(so the saved ``unet`` is a ``UNetMotionModel``), a two-layer CLIP text encoder over the byte
tokenizer and a DDIM scheduler. The ControlNet case adds a tiny ``ControlNetModel`` whose
conditioning embedding downsamples x2, matching the VAE.

Every AnimateDiff pipeline decodes in chunks: ``decode_latents`` flattens the latents
[B, C, F, h, w] -> [B*F, C, h, w] and calls ``vae.decode(chunk).sample`` for every
``decode_chunk_size`` frames (default 16), so each case asks for more frames than its
``decode_chunk_size``.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vidmem.tiny import tiny_pipeline

from . import ZooCase

FRAMES, CHUNK, HEIGHT, WIDTH = 8, 3, 32, 32
_CHUNK_NOTES = ("decode_latents: latents / scaling_factor, [B, C, F, h, w] -> [B*F, C, h, w], "
                "vae.decode(latents[i:i + decode_chunk_size]).sample per chunk (8 frames by 3 "
                "here: 3 calls of 3, 3, 2 frames; a chunk can straddle two videos when "
                "batch > 1), torch.cat, reshape to [B, C, F, H, W], .float(). The image VAE "
                "decodes every frame independently.")


def _eval(pipe):
    """``.eval()`` every module: the ``UNetMotionModel`` that the pipeline's ``__init__`` makes
    from the 2D UNet and the adapter (``UNetMotionModel.from_unet2d``) starts in training mode."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _components(seed: int) -> dict:
    return dict(_eval(tiny_pipeline("animatediff", seed)).components)


def _plain(seed: int):
    return _eval(tiny_pipeline("animatediff", seed))


def _plain_call() -> dict:
    return dict(prompt="a tiny boat", num_frames=FRAMES, height=HEIGHT, width=WIDTH,
                num_inference_steps=2, decode_chunk_size=CHUNK,
                generator=torch.Generator().manual_seed(0))


def frames(count: int = FRAMES, seed: int = 0) -> list[Image.Image]:
    """Seeded random RGB frames (an input video, or control frames)."""
    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 255, (HEIGHT, WIDTH, 3), np.uint8))
            for _ in range(count)]


def _v2v(seed: int):
    from diffusers import AnimateDiffVideoToVideoPipeline

    return _eval(AnimateDiffVideoToVideoPipeline(**_components(seed)))


def _v2v_call() -> dict:
    return dict(prompt="a tiny boat", video=frames(), height=HEIGHT, width=WIDTH,
                num_inference_steps=2, strength=1.0, decode_chunk_size=CHUNK,
                generator=torch.Generator().manual_seed(0))


def _controlnet(seed: int):
    from diffusers import AnimateDiffControlNetPipeline, ControlNetModel

    components = _components(seed)
    components.pop("feature_extractor", None)
    components.pop("image_encoder", None)
    torch.manual_seed(seed + 4)
    controlnet = ControlNetModel(
        block_out_channels=(16, 32), layers_per_block=1, in_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=32,
        conditioning_embedding_out_channels=(8, 16), norm_num_groups=4).eval()
    return _eval(AnimateDiffControlNetPipeline(controlnet=controlnet, **components))


def _controlnet_call() -> dict:
    return dict(prompt="a tiny boat", conditioning_frames=frames(seed=1), num_frames=FRAMES,
                height=HEIGHT, width=WIDTH, num_inference_steps=2, decode_chunk_size=CHUNK,
                generator=torch.Generator().manual_seed(0))


CASES = [
    ZooCase("animatediff-chunks", "AnimateDiffPipeline", "animatediff", _plain, _plain_call,
            fps=10, decode_pattern="chunks",
            notes=_CHUNK_NOTES + " The example exports a GIF at export_to_gif's default 10 "
                                 "fps."),
    ZooCase("animatediff-v2v", "AnimateDiffVideoToVideoPipeline", "animatediff", _v2v,
            _v2v_call, fps=10, decode_pattern="chunks",
            notes=_CHUNK_NOTES + " The input video (8 frames) is encoded before the loop in "
                                 "the same decode_chunk_size chunks (vae.encode, sampled with "
                                 "the generator); strength=1.0 so both steps run. Example: GIF "
                                 "at the default 10 fps."),
    ZooCase("animatediff-controlnet", "AnimateDiffControlNetPipeline", "animatediff",
            _controlnet, _controlnet_call, fps=8, decode_pattern="chunks",
            notes=_CHUNK_NOTES + " One conditioning frame per output frame (8). The example "
                                 "exports a GIF at fps=8."),
]
