"""One clip's render, from the ``vidmem render`` flags: the checks before loading, the typed
options, and the pipeline call. Shared by a single render (``cmd_render``) and every clip of a
batch (``cmd_batch``), so a clip renders the same alone or in a batch.
"""

from __future__ import annotations

import argparse
from typing import Any

from .errors import UsageError
from .options import (TINY_STEPS, budget_or_auto, check_sizes_for_family, decode_options_from,
                      resolve_model, writer_settings_from)

DEFAULT_PROMPT = "a cat walking on grass, cinematic"


def parse_pipeline_args(items: list[str]) -> dict[str, Any]:
    import ast

    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"--arg {item!r}: expected NAME=VALUE, e.g. --arg guidance_scale=5.0")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text  # a plain string
    return out


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked without loading weights: the pipeline class (from
    ``model_index.json``), frame count and sizes for its family, the decode tiling against the
    latents those sizes give (local pipelines: from the VAE's config alone), the image, the
    output path, the writer settings and the budget. Fills in the tiny pipelines' small
    defaults and records them in ``args.tiny_defaults``."""
    import os

    from ..outputs import check_video_path

    check_video_path(args.out)  # the cheap checks first: before torch and diffusers are imported
    if args.image is not None and not os.path.isfile(args.image):
        raise UsageError(f"--image {args.image!r}: no such file")
    if args.budget is not None:
        budget_or_auto(args.budget)  # a size or "auto"
    from ..loading import check_model_reachable

    if getattr(args, "video", None) is not None and not os.path.isfile(args.video):
        raise UsageError(f"--video {args.video!r}: no such file")
    facts, class_name, tiny = resolve_model(args)
    if tiny and args.steps is None:
        args.steps = args.tiny_defaults["num_inference_steps"] = TINY_STEPS
    check_sizes_for_family(facts, args.num_frames, args.height, args.width)
    args.pipeline_args = parse_pipeline_args(args.arg)
    if facts is not None:  # a required input left out: named before loading
        given = dict(args.pipeline_args, image=args.image, video=getattr(args, "video", None),
                     prompt=args.prompt or DEFAULT_PROMPT, negative_prompt=args.negative_prompt,
                     num_frames=args.num_frames, height=args.height, width=args.width)
        missing = facts.missing_inputs(given)
        if missing:
            from ..pipelines import CLI_INPUTS

            raise UsageError(f"{class_name} needs " + ", ".join(
                CLI_INPUTS.get(n, f"--arg {n}=VALUE") for n in missing))
    # the typed options, built (and so validated) once; every clip of a batch gets these
    args.decode_options = decode_options_from(args)
    args.writer_settings = writer_settings_from(args)
    check_decode_options(args)
    try:
        check_model_reachable(args.model)
    except OSError as e:
        raise UsageError(str(e)) from None


def check_decode_options(args: argparse.Namespace) -> None:
    """The decode tiling flags against the latents of the requested clip, before any loading.

    Local pipelines: the VAE is built from its config on the meta device (no weights read);
    tiny pipelines and hub ids are checked by :func:`vidmem.render` after loading, still before
    the denoising."""
    from pathlib import Path

    from ..decode import plan_decode
    from ..loading import vae_skeleton
    from ..pipelines import clip_latents

    if not all(isinstance(v, int) for v in (args.num_frames, args.height, args.width)):
        return
    if not Path(args.model).is_dir():
        return
    vae = vae_skeleton(args.model)
    latents = clip_latents(vae, args.num_frames, args.height, args.width) if vae is not None \
        else None
    if latents is not None:
        plan_decode(vae, latents, **args.decode_options.tiling())


def call_kwargs(args: argparse.Namespace, pipe: Any, log: Any) -> dict[str, Any]:
    """The pipeline call from the flags: only what was given (the pipeline's own defaults
    otherwise), and only what this pipeline takes (SVD has no prompt)."""
    import inspect

    import torch

    accepted = inspect.signature(pipe.__call__).parameters
    kwargs: dict[str, Any] = dict(generator=torch.Generator().manual_seed(args.seed))
    if args.steps is not None:
        kwargs["num_inference_steps"] = args.steps
    optional = dict(prompt=args.prompt, negative_prompt=args.negative_prompt,
                    num_frames=args.num_frames, height=args.height, width=args.width,
                    guidance_scale=args.guidance_scale)
    if "prompt" in accepted and args.prompt is None:
        optional["prompt"] = DEFAULT_PROMPT
    for name, value in optional.items():
        if value is None:
            continue
        if name in accepted:
            kwargs[name] = value
        elif getattr(args, name, None) is not None:
            log(f"note: {type(pipe).__name__} takes no {name}; --{name.replace('_', '-')} ignored")
    if args.image is not None:
        from diffusers.utils import load_image

        kwargs["image"] = load_image(args.image)
    if getattr(args, "video", None) is not None:
        from diffusers.utils import load_video

        kwargs["video"] = load_video(args.video)
    kwargs.update({name: load_media(value) for name, value in args.pipeline_args.items()})
    return kwargs


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif")


def load_media(value: Any) -> Any:
    """An ``--arg`` value naming an image or video file, loaded as the pipeline takes it (a PIL
    image; a list of PIL frames), so control, mask and pose videos go in like ``--video``; any
    other value as given."""
    import os

    if not isinstance(value, str) or not os.path.isfile(value):
        return value
    suffix = os.path.splitext(value)[1].lower()
    if suffix in IMAGE_SUFFIXES:
        from diffusers.utils import load_image

        return load_image(value)
    if suffix in VIDEO_SUFFIXES:
        from diffusers.utils import load_video

        return load_video(value)
    return value


def quiet_libraries(quiet: bool) -> None:
    """diffusers' and transformers' own progress bars off with ``--quiet``."""
    if quiet:
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
