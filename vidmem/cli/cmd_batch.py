"""``vidmem render --prompts FILE --out-dir DIR``: a batch of clips (see :mod:`vidmem.batch`).

Every clip is rendered exactly as ``vidmem render`` would render it alone with the same flags
and the clip's prompt, seed and sizes (the pipeline call is built by the same code). Under
``torchrun`` the clips are divided among the ranks; each rank prints a line per clip it finishes,
rank 0 the summary. Exit status 0 when every clip is done, 1 when any failed (the manifest says
which and why).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

from .clip import call_kwargs, check_args
from .distributed import RankJob
from .errors import UsageError
from .options import check_sizes_for_family, parse_budget, resolve_model


def add_batch_options(r: argparse.ArgumentParser) -> None:
    g = r.add_argument_group("batch of clips")
    g.add_argument("--prompts", default=None, metavar="FILE",
                   help="render every prompt of FILE (one per line, or JSON lines with per-clip "
                        "prompt, name, seed, num_frames, height, width, negative_prompt, "
                        "guidance_scale, steps) into --out-dir as NNNN-slug.mp4, seeds --seed + "
                        "N unless given; under torchrun the clips are divided among the ranks; "
                        "re-running skips finished clips and resumes interrupted ones from their "
                        "latents; DIR/manifest.json records every clip (default: one clip, --out)")
    g.add_argument("--out-dir", default=None, metavar="DIR",
                   help="directory for a --prompts batch (created if missing; required with "
                        "--prompts)")


def check_batch_flags(args: argparse.Namespace) -> bool:
    """Whether this is a batch (``--prompts``); refuses flag combinations that mean nothing."""
    if args.prompts is None:
        if args.out_dir is not None:
            raise UsageError("--out-dir goes with --prompts FILE (for one clip use --out PATH)")
        if args.out is None:
            raise UsageError("--out PATH is required (or --prompts FILE --out-dir DIR for a "
                             "batch of clips)")
        return False
    if args.out is not None:
        raise UsageError("--prompts writes one file per clip into --out-dir DIR; drop --out")
    if args.out_dir is None:
        raise UsageError("--prompts FILE needs --out-dir DIR")
    if args.split:
        raise UsageError("--split splits one clip over the ranks; a --prompts batch renders "
                         "whole clips per rank (drop --split)")
    return True


def clip_args(args: argparse.Namespace, clip: Any) -> argparse.Namespace:
    """The flags ``vidmem render`` would be given to render ``clip`` alone."""
    one = copy.copy(args)
    one.seed = clip.seed
    for flag, value in (("prompt", clip.prompt), ("negative_prompt", clip.negative_prompt),
                        ("num_frames", clip.num_frames), ("height", clip.height),
                        ("width", clip.width), ("guidance_scale", clip.guidance_scale),
                        ("steps", clip.steps)):
        if value is not None:
            setattr(one, flag, value)
    return one


def run_batch(args: argparse.Namespace) -> int:
    from ..batch import read_prompts

    clips = read_prompts(args.prompts, base_seed=args.seed)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir {args.out_dir!r} is a file, not a directory")
    facts, _, _ = resolve_model(args)  # fills the tiny pipelines' default sizes into args
    for clip in clips:
        try:
            check_sizes_for_family(facts, clip.num_frames or args.num_frames,
                                   clip.height or args.height, clip.width or args.width)
        except UsageError as e:
            raise UsageError(f"{args.prompts} line {clip.line}: {e}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    args.out = str(out_dir / clips[0].filename)  # a real output path, for the shared checks
    job = RankJob.start(args, batch=True)
    return job.run(lambda: _run(args, clips, job))


def _run(args: argparse.Namespace, clips: list, job: RankJob) -> int:
    check_args(args)  # builds args.decode_options / args.writer_settings: every clip gets them
    import diffusers
    import transformers

    from ..batch import render_batch
    from ..loading import DTYPES, load_pipeline

    quiet = args.quiet

    def log(msg: str) -> None:
        if not quiet:
            print(job.rank_prefix + msg, file=sys.stderr)

    diffusers.utils.logging.disable_progress_bar()  # one line per clip instead
    transformers.utils.logging.disable_progress_bar()
    if job.is_writer:
        log(f"stage: {len(clips)} clips from {args.prompts} into {args.out_dir}"
            + (f", divided among {job.session.size} ranks" if job.splits else ""))
    pipe = load_pipeline(args.model, DTYPES[args.dtype] if args.dtype else None)
    pipe.set_progress_bar_config(disable=True)
    offload = None
    if args.budget is not None:
        from ..offload import plan_offload

        offload = plan_offload(pipe, parse_budget(args.budget)).apply(pipe)  # once, for all clips

    def call_for(clip: Any) -> dict[str, Any]:
        kwargs = call_kwargs(clip_args(args, clip), pipe, lambda msg: None)
        if offload is not None:
            kwargs["offload"] = offload
        return kwargs

    def on_clip(record: dict[str, Any]) -> None:
        if record["status"] != "done":
            what = f"FAILED ({record['error']})"
        elif "frames" in record:
            what = f"{record['action']} ({record['frames']} frames, {record['seconds']:.1f}s)"
        else:
            what = record["action"]
        log(f"{Path(record['file']).name}: {what}")

    report = render_batch(pipe, clips, args.out_dir, decode_options=args.decode_options,
                          writer_settings=args.writer_settings, keep_latents=args.keep_latents,
                          call_for=call_for, on_clip=on_clip, process_group=job.session)
    if job.is_writer:
        print(report.to_json() if args.json else str(report))
    return 1 if report.failed else 0
