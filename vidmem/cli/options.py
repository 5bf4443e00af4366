"""What the ``vidmem`` subcommands share: the argument parser, value types, the decode and writer
options, and the checks that ``render``, ``decode`` and ``plan`` must agree on.

Why one module: a size or flag that ``vidmem render`` refuses must be refused the same way, with
the same words, by ``vidmem plan`` and ``vidmem decode``; keeping the checks here makes that true
by construction.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from .errors import UsageError


#: sizes the tiny pipelines render by default (small enough for a CPU in seconds).
TINY_DEFAULTS = {"height": 64, "width": 96}
TINY_FRAMES = {"mochi": 13, "svd": 8, "animatediff": 8}
#: denoising steps of the tiny pipelines (real pipelines use their own default, e.g. 50).
TINY_STEPS = 2
DEFAULT_MODEL = "vidmem-tiny:wan:0"


def whole_number(minimum: int):
    """An argparse type: a whole number of at least ``minimum``, with a message that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a positive number, got {value}" if minimum == 1
                else f"expected {minimum} or more, got {value}")
        return value

    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)


def positive_float(text: str) -> float:
    """An argparse type: a finite number above zero (``inf`` and ``nan`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (no usage dump) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"vidmem: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks."""


def add_shape_options(p: argparse.ArgumentParser, frames_are: str) -> None:
    """``--num-frames``, ``--height``, ``--width``: the clip's size, shared by ``render`` and
    ``plan`` so both accept (and default) exactly the same sizes. ``frames_are``: what the frame
    count means to this command, for its help."""
    p.add_argument("--num-frames", type=positive_int, default=None,
                   help=f"{frames_are} (Wan, CogVideoX, HunyuanVideo: 4k+1; LTX: 8k+1; "
                        f"Mochi: 6k+1); default: 17 for tiny pipelines, else the pipeline's own")
    p.add_argument("--height", type=positive_int, default=None,
                   help="default: 64 for tiny pipelines, else the pipeline's own")
    p.add_argument("--width", type=positive_int, default=None,
                   help="default: 96 for tiny pipelines, else the pipeline's own")


def add_decode_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decode tiling (pixels and pixel frames)")
    g.add_argument("--chunk-frames", type=positive_int, default=None,
                   help="new frames decoded per temporal chunk (default 16)")
    g.add_argument("--overlap-frames", type=non_negative_int, default=None,
                   help="frames of temporal context per window, for VAEs without a causal cache "
                        "(default: per family; ignored for Wan/CogVideoX)")
    g.add_argument("--tile-size", type=non_negative_int, default=None,
                   help="spatial tile edge in pixels; 0 disables tiling (default: from frame size "
                        "and free device memory)")
    g.add_argument("--tile-overlap", type=non_negative_int, default=None,
                   help="spatial tile overlap in pixels (default: 64, or a quarter of a smaller tile)")
    g.add_argument("--whole-clip-norm", choices=("auto", "on", "off", "exact"), default="auto",
                   help="for VAEs whose GroupNorms span the whole clip (HunyuanVideo): 'on' "
                        "normalizes every chunk with the whole clip's statistics gathered in one "
                        "statistics pass first (no seams; about 2x the decode time), 'exact' "
                        "with one pass per norm (the full decode to float rounding; slow), 'off' "
                        "decodes cross-faded windows with their own statistics (default: auto = "
                        "the family's default, 'on' for HunyuanVideo, unused by other families)")


def decode_options_from(args: argparse.Namespace) -> Any:
    """The :class:`vidmem.DecodeOptions` the decode flags give (every subcommand that decodes
    builds its options here, once, so each flag reaches every clip it concerns)."""
    from ..decode.options import WHOLE_CLIP_NORM_FLAGS, DecodeOptions

    return DecodeOptions(chunk_frames=getattr(args, "chunk_frames", None),
                         overlap_frames=getattr(args, "overlap_frames", None),
                         tile_size=getattr(args, "tile_size", None),
                         tile_overlap=getattr(args, "tile_overlap", None),
                         whole_clip_norm=WHOLE_CLIP_NORM_FLAGS[
                             getattr(args, "whole_clip_norm", None) or "auto"],
                         memory_breakdown=bool(getattr(args, "memory_breakdown", False)))


def writer_settings_from(args: argparse.Namespace) -> Any:
    """The :class:`vidmem.WriterSettings` the writer flags give (``--fps``, ``--lossless``)."""
    from ..io.settings import WriterSettings

    return WriterSettings(fps=getattr(args, "fps", None),
                          lossless=bool(getattr(args, "lossless", False)))


def add_memory_breakdown_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory-breakdown", action="store_true",
                   help="profile the decode's host memory: baseline, live tensors, kernel "
                        "workspaces, allocator overhead, in the report and --json (default: off; "
                        "costs some decode time)")


def parse_budget(text: str, flag: str = "--budget") -> int:
    from ..memory import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None


def budget_or_auto(text: str, flag: str = "--budget") -> int | str:
    """A memory size in bytes, or ``"auto"`` (the CUDA device's free memory minus a margin,
    resolved by the planner)."""
    if text.strip().lower() == "auto":
        return "auto"
    return parse_budget(text, flag)


def check_sizes_for_family(facts: Any, num_frames: int | None, height: int | None,
                           width: int | None) -> None:
    """Frame count and sizes the pipeline cannot produce (its VAE's frame rule, its VAE's
    factor times its patch size), refused with the nearest valid values."""
    if facts is None:
        return
    if num_frames is not None and facts.frames_error(num_frames):
        raise UsageError(f"--num-frames {facts.frames_error(num_frames)}")
    for name, value in (("height", height), ("width", width)):
        if value is not None and facts.size_error(name, value):
            raise UsageError(f"--{facts.size_error(name, value)}")


def resolve_model(args: argparse.Namespace) -> tuple[Any, str | None, tuple[str, int] | None]:
    """``(facts, class_name, tiny)`` for ``args.model`` from ``model_index.json`` and the
    components' configs (built on the meta device: no weights read) or the tiny id; fills in the
    tiny pipelines' small default sizes. ``facts`` is ``None`` when the configs cannot be read
    before loading (a hub id): :func:`vidmem.render` checks the same after loading, still before
    denoising."""
    from ..loading import pipeline_class_name
    from ..pipelines import facts_for_model
    from ..tiny import parse_tiny_model_id, tiny_pipeline_class

    args.model = args.model or DEFAULT_MODEL
    try:
        tiny = parse_tiny_model_id(args.model)
        class_name = tiny_pipeline_class(tiny[0]) if tiny else pipeline_class_name(args.model)
        facts = facts_for_model(args.model, class_name) if class_name else None
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    #: what vidmem filled in for a tiny pipeline (reported as defaults).
    args.tiny_defaults = {}
    if tiny:
        defaults = dict(num_frames=TINY_FRAMES.get(tiny[0], 17), **TINY_DEFAULTS)
        for name, value in defaults.items():
            if getattr(args, name, None) is None:
                setattr(args, name, value)
                args.tiny_defaults[name] = value
    return facts, class_name, tiny
