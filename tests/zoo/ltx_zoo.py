"""Zoo cases for diffusers' ``ltx`` folder: ``LTXConditionPipeline`` and
``LTXI2VLongMultiPromptPipeline``.

Both reuse the components of :func:`vidmem.tiny._ltx` (the LTX-Video 0.9.1+ layout: x8 time,
x32 space, timestep-conditioned decoder with injected noise, a two-layer T5 over the byte-level
tokenizer).

How they decode:

* ``LTXConditionPipeline`` (``"final"``): one ``vae.decode(latents, timestep, return_dict=False)``
  after the loop, the decode timestep passed POSITIONALLY (``None`` when the VAE is not timestep
  conditioned). Before it, the latents are denormalized and, with a timestep-conditioned VAE, mixed
  with fresh ``randn_tensor`` noise drawn from the call's ``generator``
  (``(1 - decode_noise_scale) * latents + decode_noise_scale * noise``), so the decode input
  depends on the generator state after denoising.
* ``LTXI2VLongMultiPromptPipeline`` (``"tiles"``): denoises in temporal windows (latent windows of
  ``temporal_tile_size // 8`` frames overlapping by ``temporal_overlap // 8``, fused in latent
  space), then ``vae_decode_tiled`` decodes ``decode_vertical_tiles x decode_horizontal_tiles``
  spatial tiles of the WHOLE clip's latents, each with ``self.vae.decode(tile, vt,
  return_dict=False)`` (``vt`` positional), feathers them together in pixel space, clamps to
  [-1, 1], and ``last_frame_fix`` (on by default) first appends a copy of the last latent frame and
  then drops the last ``8`` decoded frames. ``output_type`` defaults to ``"latent"`` (the user must
  ask for ``"np"`` / ``"pil"``). With ``seed`` not None (the default is ``seed=0``), every window
  draws its noise from its own ``torch.Generator().manual_seed(seed + w_start)``; the passed
  ``generator`` only feeds the decode noise.

Global RNG: the decoder injects noise (``decoder_inject_noise``) with ``torch.randn`` and NO
generator (the pipelines pass none to ``vae.decode``), i.e. from torch's global RNG, so two calls
give the same frames only from the same global RNG state. Each ``call()`` therefore also runs
``torch.manual_seed(0)`` (call it right before ``pipe(...)``); a consumer comparing against the
pipeline's own output must start both from the same global state.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vidmem.tiny import _ltx

from . import ZooCase


def _image(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _condition(seed: int):
    from diffusers import LTXConditionPipeline

    pipe = LTXConditionPipeline(**_ltx(seed).components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _seed_global_rng() -> None:
    """The decoder's injected noise draws from the global RNG (see the module docstring)."""
    torch.manual_seed(0)


def _condition_call() -> dict:
    _seed_global_rng()
    return dict(prompt="a cat walks on the grass", negative_prompt="", image=_image(64, 64),
                frame_index=0, height=64, width=64, num_frames=17, num_inference_steps=2,
                guidance_scale=3.0, decode_timestep=0.05, decode_noise_scale=0.025,
                max_sequence_length=32, generator=torch.Generator().manual_seed(0))


def _long(seed: int):
    from diffusers import LTXEulerAncestralRFScheduler, LTXI2VLongMultiPromptPipeline

    base = _ltx(seed)
    components = dict(base.components)
    # the scheduler the docstring example swaps in "for ComfyUI parity"
    components["scheduler"] = LTXEulerAncestralRFScheduler()
    pipe = LTXI2VLongMultiPromptPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _long_call() -> dict:
    # 17 frames -> 3 latent frames; windows of 16 // 8 = 2 latent frames overlapping by 8 // 8 = 1:
    # two temporal windows, (0, 2) and (1, 3), one prompt each ("|"-split). 96 px wide -> 3 latent
    # columns: 2 horizontal tiles of 2 latent columns overlapping by 1 (32 px feathered).
    _seed_global_rng()
    return dict(prompt="a cat walks | a cat sits down", negative_prompt="", cond_image=_image(64, 96),
                height=64, width=96, num_frames=17, num_inference_steps=2,
                temporal_tile_size=16, temporal_overlap=8, decode_horizontal_tiles=2,
                decode_vertical_tiles=1, decode_overlap=1, max_sequence_length=32,
                generator=torch.Generator().manual_seed(0))


CASES = [
    ZooCase(name="ltx-condition", pipeline_class="LTXConditionPipeline", folder="ltx",
            build=_condition, call=_condition_call, fps=24, decode_pattern="final",
            notes="image condition at frame 0 (VAE-encoded); one vae.decode(latents, timestep) "
                  "with the decode timestep positional and decode noise mixed in from the "
                  "call's generator first. The decoder injects noise from torch's GLOBAL RNG: "
                  "call() seeds it (torch.manual_seed(0))."),
    ZooCase(name="ltx-long-multi-prompt", pipeline_class="LTXI2VLongMultiPromptPipeline",
            folder="ltx", build=_long, call=_long_call, fps=25, decode_pattern="tiles",
            notes="2 temporal windows (denoised separately, fused in latent space) and 2 "
                  "horizontal decode tiles: vae_decode_tiled calls vae.decode once per spatial "
                  "tile over all frames (timestep positional), feathers, clamps to [-1, 1] and "
                  "drops the 8 frames its last_frame_fix added. The docstring example exports "
                  "nothing; fps=25 is its frame_rate default. Decoder noise from the global RNG, "
                  "seeded by call()."),
]
