"""Zoo case for diffusers' ``cosmos`` folder: ``Cosmos2VideoToWorldPipeline`` (Cosmos-Predict2
video2world: a T5 text encoder, ``CosmosTransformer3DModel``, the Wan 2.1 VAE).

The safety checker. ``Cosmos2VideoToWorldPipeline.__init__`` replaces ``safety_checker=None``
with ``CosmosSafetyChecker()``, which is the ``cosmos_guardrail`` package's class (it downloads
NVIDIA's guardrail models) or, where that package is missing, a stub that raises ``ImportError``;
and ``__call__`` refuses to run when ``pipe.safety_checker is None`` (a license-compliance
``ValueError``), so there is no "none" to pass. We pass a harmless stand-in instead,
:class:`PassThroughSafetyChecker`: a parameter-free ``ModelMixin`` / ``ConfigMixin`` (the shape of
diffusers' own test dummy) whose ``check_text_safety`` returns ``True`` and whose
``check_video_safety`` returns the frames unchanged. It round-trips: ``save_pretrained`` records it
in ``model_index.json`` as ``["zoo.cosmos_zoo", "PassThroughSafetyChecker"]`` and
``from_pretrained`` imports it back from this module (``tests/`` on ``sys.path``, as under pytest).

How it decodes (``"final"``), and what the safety checker changes: one
``self.vae.decode(latents, return_dict=False)`` after the loop (latents de-normalized with the
VAE's ``latents_mean`` / ``latents_std`` and ``sigma_data`` first). With ANY safety checker set
(always, see above) the decoded video then goes through ``postprocess_video`` TWICE:
``postprocess_video(video, output_type="np")`` -> ``(video * 255).astype(np.uint8)`` ->
``check_video_safety`` per clip -> ``np.stack(...) / 255 * 2 - 1`` ->
``torch.from_numpy(...).permute(0, 4, 1, 2, 3)`` -> ``postprocess_video(video, output_type)``.
So the pipeline's frames are quantized to multiples of 1/255 (floor, not round: ``astype`` truncates)
and the first ``postprocess_video`` call's result must be a real numpy array.

Deviation: ``concat_padding_mask=False`` in the transformer (released configs: ``True``), because
``True`` needs torchvision (``transforms.functional.resize`` of the padding mask), not installed
here; the mask the pipeline passes is all zeros, so the extra input channel would contribute
nothing.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image

from vidmem.tiny import _tiny_t5, tiny_tokenizer, tiny_wan_vae

from . import ZooCase


class PassThroughSafetyChecker(ModelMixin, ConfigMixin):
    """A stand-in for ``cosmos_guardrail.CosmosSafetyChecker`` that lets everything through."""

    def __init__(self) -> None:
        super().__init__()
        # a device / dtype for ``.to(device)`` and ``ModelMixin.device``; persistent, so that
        # ``save_pretrained`` writes a weights file for ``from_pretrained`` to find.
        self.register_buffer("_device_tracker", torch.zeros(1), persistent=True)

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, frames: np.ndarray) -> np.ndarray:
        return frames


def _video2world(seed: int):
    from diffusers import (Cosmos2VideoToWorldPipeline, CosmosTransformer3DModel,
                           FlowMatchEulerDiscreteScheduler)

    vae = tiny_wan_vae(seed)
    # concat_padding_mask=False (the checkpoints use True): True resizes the padding mask with
    # torchvision, which this environment does not have. The pipeline's padding mask is all zeros,
    # so the concatenated channel adds nothing to the patch embedding either way.
    text_encoder = _tiny_t5(seed + 1)
    torch.manual_seed(seed + 2)
    transformer = CosmosTransformer3DModel(
        in_channels=16 + 1, out_channels=16, num_attention_heads=2, attention_head_dim=16,
        num_layers=2, mlp_ratio=2, text_embed_dim=32, adaln_lora_dim=4, max_size=(4, 32, 32),
        patch_size=(1, 2, 2), rope_scale=(2.0, 1.0, 1.0), concat_padding_mask=False,
        extra_pos_embed_type="learnable").eval()
    pipe = Cosmos2VideoToWorldPipeline(
        text_encoder=text_encoder, tokenizer=tiny_tokenizer(64), transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True),
        safety_checker=PassThroughSafetyChecker().eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _video2world_call() -> dict:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return dict(image=image, prompt="a plate is scrubbed clean", negative_prompt="bad quality",
                height=32, width=32, num_frames=9, num_inference_steps=2, guidance_scale=3.0,
                fps=16, max_sequence_length=32, generator=torch.Generator().manual_seed(0))


CASES = [
    ZooCase(name="cosmos2-video2world", pipeline_class="Cosmos2VideoToWorldPipeline",
            folder="cosmos", build=_video2world, call=_video2world_call, fps=16,
            decode_pattern="final",
            notes="safety_checker is a pass-through stand-in (None is refused at call time, the "
                  "real one needs cosmos_guardrail + hub models). With it set the pipeline "
                  "post-processes twice with a uint8 round trip (frames quantized to k/255, "
                  "truncated); one vae.decode(latents) after the loop; the image is VAE-encoded "
                  "as the first (conditioning) latent frame."),
]
