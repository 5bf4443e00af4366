"""Orchestration: run the pipeline with its decode captured, decode chunk by chunk, stream to MP4.

Why not ``pipe(...)`` then ``export_to_video``: the pipeline would decode the whole clip at once
(device memory grows with clip length) and hand back every frame as float32 on the host (host
memory grows with clip length, 4x the size of the video in uint8). Here the pipeline's own call
runs with its ``vae.decode`` captured (:mod:`vidmem.capture`: the latents it decodes recorded,
meta stand-ins returned), and each decoded chunk goes to the writer as uint8 and is dropped.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .breakdown import MemoryBreakdown, MemoryProbe
from .checkpoint import capture_rng, non_finite_message, save_checkpoint_anywhere
from .decode import decode_latents, plan_decode
from .decode.fallback import decode_with_fallback
from .decode.options import DecodeOptions, WholeClipNorm
from .feasibility import (available_host_bytes, check_render_fits, checkpoint_bytes,
                          estimate_render_buffers, frames_error)
from .errors import (DecodeFailed, DecodeInterrupted, GroupBroken, InvalidInput, InvalidOptions,
                     RankFailed, WriterError)
from .files import resume_command
from .io.settings import WriterSettings
from .io.writer import VideoWriter
from .memory import cuda_peak_bytes, current_rss_bytes, format_bytes, peak_rss_bytes
from .offload import AppliedPlan, OffloadPlan
from .outputs import OutputClaim, check_video_path
from .parallel import DecodeSplit, Session, split_job
from .parallel.decode import run_share, share_decode_input
from .capture import run_capturing
from .pipelines import (CLI_INPUTS, PipelineFacts, call_arguments, expected_vae_latents,
                        facts_for)

log = logging.getLogger("vidmem")

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: ``"denoise"`` (called once with ``0, 0`` when every
check has passed and the pipeline starts), ``"decode"`` (frames decoded), ``"write"`` (frames
written)."""

#: pipeline arguments whose defaults a report names when the caller left them to the pipeline.
REPORTED_DEFAULTS = ("num_inference_steps", "num_frames", "height", "width", "guidance_scale",
                     "guidance_scale_2", "fps", "decode_timestep", "max_sequence_length")


@dataclass
class RenderReport:
    """What a render did: the clip, where it went, and what it cost per stage."""

    path: str
    frames: int
    height: int
    width: int
    fps: float
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: int = 0
    peak_cuda_bytes: int | None = None
    file_bytes: int = 0
    #: out-of-memory retries of the decode (what failed, what plan was tried next).
    retries: list[str] = field(default_factory=list)
    #: pipeline arguments the caller left to the pipeline, with the values it used.
    defaults: dict[str, Any] = field(default_factory=dict)
    #: the decode-ready latents, when kept (``keep_latents``), else ``None``.
    latents_path: str | None = None
    #: things the user should know (a checkpoint saved elsewhere, a stale partial replaced).
    notes: list[str] = field(default_factory=list)
    # --- host memory of the decode (issue #16) ----------------------------------------------
    #: RSS when the decode started: interpreter, libraries, models, latents.
    baseline_rss_bytes: int = 0
    #: with ``memory_breakdown=True``: :class:`vidmem.breakdown.MemoryBreakdown` as a dict
    #: (baseline, live tensors, kernel workspaces, allocator overhead, largest workspace op).
    memory: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def __str__(self) -> str:
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())
        lines = [
            f"wrote {self.path}: {self.frames} frames, {self.width}x{self.height} @ {self.fps:g} fps, "
            f"{format_bytes(self.file_bytes)}",
            f"time: {stages}",
            f"peak host memory (RSS): {format_bytes(self.peak_rss_bytes)}"
            + (f"; peak CUDA allocated: {format_bytes(self.peak_cuda_bytes)}"
               if self.peak_cuda_bytes is not None else ""),
        ]
        if self.defaults:
            lines.append("defaults used: " + ", ".join(f"{k}={v!r}" for k, v in
                                                       self.defaults.items()))
        if self.latents_path:
            lines.append(f"latents kept at {self.latents_path}")
        lines += [f"retried: {r}" for r in self.retries]
        if self.memory is not None:
            fields = {k: v for k, v in self.memory.items() if k != "over_baseline"}
            lines.append(str(MemoryBreakdown(**fields)))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _kept_message(partial: Path | None, frames: int, checkpoint: Path | None,
                  resume: str | None) -> str:
    parts = []
    if checkpoint is not None:
        parts.append(f"the latents are kept at {checkpoint}")
    if partial is not None:
        parts.append(f"the partial stream {partial} plays {frames} frame(s)")
    if resume:
        parts.append(f"resume with `{resume}`")
    return "; ".join(parts)


def resume_flags(decode: DecodeOptions, writer: WriterSettings) -> list[str]:
    """The ``vidmem decode`` flags that repeat these decode and writer settings (the checkpoint
    records them too; the flags make the printed command say what it will do)."""
    return decode.cli_flags() + writer.cli_flags()


#: the keyword shortcuts of :func:`render` and :func:`decode_to_video` over the typed options.
DECODE_SHORTCUTS = ("chunk_frames", "overlap_frames", "tile_size", "tile_overlap",
                    "whole_clip_norm", "oom_fallback", "memory_breakdown")


def _with_shortcuts(decode_options: DecodeOptions | None, writer_settings: WriterSettings | None,
                    call: dict[str, Any]) -> tuple[DecodeOptions, WriterSettings]:
    """The typed options of a call: the given values, overridden by the keyword shortcuts that
    were given (``None``: not given). ``call``: the calling function's arguments (its
    ``locals()``), which hold the shortcuts by their names."""
    decode = DecodeOptions.build(decode_options, **{k: call[k] for k in DECODE_SHORTCUTS})
    fps, lossless, writer_options = call["fps"], call["lossless"], call["writer_options"]
    if writer_options is not None and not isinstance(writer_options, dict):
        raise InvalidOptions(f"writer_options must be a dict of WriterSettings fields, got "
                             f"{writer_options!r}")
    writer = WriterSettings.build(writer_settings, fps=fps, lossless=lossless,
                                  **(writer_options or {}))
    return decode, writer


@split_job
def decode_to_video(vae: torch.nn.Module, latents: torch.Tensor, path: str | Path,
                    fps: float | None = None, *, decode_options: DecodeOptions | None = None,
                    writer_settings: WriterSettings | None = None,
                    decode_kwargs: dict | None = None, progress: ProgressFn | None = None,
                    overwrite: bool = False, resume: bool = False, process_group: Any = None,
                    chunk_frames: int | None = None, overlap_frames: int | None = None,
                    tile_size: int | None = None, tile_overlap: int | None = None,
                    whole_clip_norm: WholeClipNorm = None, lossless: bool = False,
                    writer_options: dict[str, Any] | None = None,
                    oom_fallback: bool | None = None,
                    memory_breakdown: bool | None = None,
                    frames: int | None = None, first_frame: int = 0) -> RenderReport:
    """Decode ``latents`` (what ``vae.decode`` takes) straight into an MP4 at ``path``.

    ``frames``, ``first_frame``: write only ``frames`` decoded frames from ``first_frame`` on
    (what a pipeline's own output keeps when its post-processing trims the decode: Helios' and
    FramePack's ``4k+1``, HunyuanVideo I2V's first 4 frames dropped); ``None``: all of them.

    Only one chunk of frames is alive at a time; the writer encodes chunk ``k`` on its thread
    while chunk ``k + 1`` decodes. ``decode_options`` (:class:`vidmem.DecodeOptions`: chunks,
    tiles, whole-clip statistics, the out-of-memory fallback, the memory breakdown) and
    ``writer_settings`` (:class:`vidmem.WriterSettings`; default fps 16) say how; the keyword
    arguments after ``process_group`` are shortcuts that override their fields
    (``writer_options``: a dict of :class:`~vidmem.WriterSettings` fields).
    ``oom_fallback`` (on by default): on an out-of-memory error, retry with smaller chunks, then
    smaller tiles (:mod:`vidmem.decode.fallback`), each retry logged and listed in the report's
    ``retries``. ``memory_breakdown``: profile the decode's host memory (:mod:`vidmem.breakdown`:
    baseline, live tensors, kernel workspaces, allocator overhead; costs some time) into the
    report's ``memory``.

    The video is claimed for this run first (:class:`vidmem.outputs.OutputClaim`): another run
    writing it, an existing file (unless ``overwrite``) or a partial stream of an earlier run
    (unless ``overwrite`` or ``resume``) fail before any decoding. A failure after the decode
    started raises :class:`vidmem.DecodeFailed` (:class:`vidmem.DecodeInterrupted` for Ctrl-C)
    saying whether the decode or the write failed and how many frames the partial stream plays.

    ``process_group``: share the decode among the ranks of this ``torch.distributed`` group
    (default: the world group when it is initialized with several processes; ``False``: this
    process alone). Every rank calls this; each decodes its share of the tiles (or windows) of
    rank 0's latents, and rank 0 blends them exactly as one process would, claims and writes
    ``path`` and returns its report (the other ranks write nothing: their reports have
    ``frames=0``). A failure on any rank raises :class:`vidmem.RankFailed` on every rank (on
    rank 0 as the cause of its :class:`vidmem.DecodeFailed`; see :mod:`vidmem.parallel`).
    """
    session: Session = process_group  # resolved by @split_job
    decode, writer = _with_shortcuts(decode_options, writer_settings, locals())
    if writer.fps is None:
        writer = writer.with_(fps=16)
    claim = None
    if session.is_writer:  # bad input fails here, before the output is touched (or any exchange)
        problem = non_finite_message(latents, "the latents")
        if problem:
            raise InvalidInput(problem)
        plan_decode(vae, latents, decode_kwargs=decode_kwargs, **decode.tiling())
        claim = OutputClaim(path, overwrite=overwrite, resume=resume).acquire()
    try:
        work = None
        if session.splits:  # --- scale-out (#14): every rank decodes rank 0's inputs
            latents, decode_kwargs, shared_tile = share_decode_input(
                session, vae, latents, decode_kwargs, decode.tiling())
            decode = decode.with_(tile_size=shared_tile)
            work = DecodeSplit(session)
            progress = progress if session.is_writer else None
        notes = [f"replaced the partial stream {p} ({n} frames) left by an earlier run"
                 for p, n in (claim.replaced_partials if claim is not None else ())]
        for note in notes:
            log.warning("%s", note)
        report = _decode_and_write(vae, latents, claim.video if claim else Path(path), decode,
                                   writer, decode_kwargs, progress, session, work,
                                   claim.lock if claim else None, frames, first_frame)
    finally:
        if claim is not None:
            claim.release()
    report.notes = notes + report.notes
    return report


def _decode_and_write(vae: torch.nn.Module, latents: torch.Tensor, path: Path,
                      decode: DecodeOptions, settings: WriterSettings,
                      decode_kwargs: dict | None, progress: ProgressFn | None, session: Session,
                      work: DecodeSplit | None, lock: Any,
                      keep_frames: int | None = None, first_frame: int = 0) -> RenderReport:
    retries: list[str] = []
    decode_progress = (lambda d, t: progress("decode", d, t)) if progress else None
    if decode.oom_fallback:
        def on_retry(message: str) -> None:
            retries.append(message)
            if session.is_writer:
                log.warning("%s", message)

        chunks = decode_with_fallback(vae, latents, on_retry=on_retry, progress=decode_progress,
                                      split=work, decode_kwargs=decode_kwargs, **decode.tiling())
    else:
        chunks = decode_latents(vae, latents, output_type="uint8", progress=decode_progress,
                                split=work, decode_kwargs=decode_kwargs, **decode.tiling())
    if keep_frames is not None or first_frame:
        chunks = _frame_range(chunks, first_frame, keep_frames)
    if not session.is_writer:  # --- scale-out (#14): decode a share, write nothing
        t = time.perf_counter()
        run_share(chunks)
        session.agree()  # rank 0 has written the file
        return RenderReport(path=str(path), frames=0, height=0, width=0,
                            fps=float(settings.fps), seconds={"decode": time.perf_counter() - t},
                            peak_rss_bytes=peak_rss_bytes(), peak_cuda_bytes=cuda_peak_bytes(),
                            retries=retries)
    decode_s = write_s = 0.0
    height = width = 0
    writer_progress = (lambda n, _b: progress("write", n, 0)) if progress else None
    writer = VideoWriter(path, settings=settings, progress=writer_progress, lock=lock)
    stage = "decode"
    baseline_rss = current_rss_bytes()
    probe = MemoryProbe() if decode.memory_breakdown else nullcontext()
    try:
        with probe, writer:
            t = time.perf_counter()
            for chunk in chunks:
                t1 = time.perf_counter()
                decode_s += t1 - t
                height, width = int(chunk.shape[1]), int(chunk.shape[2])
                stage = "write"
                writer.write(chunk)
                stage = "decode"
                del chunk
                t = time.perf_counter()
                write_s += t - t1
            t1 = time.perf_counter()
            stage = "write"  # the close: draining the queue, finalizing the file
    except BaseException as e:
        if isinstance(e, WriterError):
            stage = "write"
        agreed: BaseException | None = None
        if work is not None:  # --- scale-out (#14): the other ranks stop too
            try:
                work.stop(e)
            except (RankFailed, GroupBroken) as told:
                agreed = told
        partial = writer.partial_path if writer.partial_path.exists() else None
        frames = writer.frames_written
        kept = _kept_message(partial, frames, None, None)
        if isinstance(e, KeyboardInterrupt):
            reason = f"interrupted during the decode of {path}"
            raise DecodeInterrupted(reason + (f"; {kept}" if kept else ""), partial=partial,
                                    frames_played=frames, reason=reason) from (agreed or e)
        what = "writing the video" if stage == "write" else "decoding"
        reason = f"{what} failed ({type(e).__name__}: {e})"
        raise DecodeFailed(reason + (f"; {kept}" if kept else ""), stage=stage, partial=partial,
                           frames_played=frames, reason=reason) from (agreed or e)
    write_s += time.perf_counter() - t1
    session.agree()  # --- scale-out (#14): the file is complete; the other ranks may return
    memory = (probe.result.to_dict() if decode.memory_breakdown and probe.result is not None
              else None)
    # The probe resets VmHWM for the decode; the process's own peak is kept in the breakdown.
    peak = max(peak_rss_bytes(), memory["process_peak_rss"] if memory else 0)
    return RenderReport(path=str(path), frames=writer.frames_written, height=height, width=width,
                        fps=float(settings.fps), seconds={"decode": decode_s, "write": write_s},
                        peak_rss_bytes=peak, peak_cuda_bytes=cuda_peak_bytes(),
                        retries=retries, file_bytes=path.stat().st_size if path.exists() else 0,
                        baseline_rss_bytes=baseline_rss, memory=memory)


def _write_own_frames(frames: Any, claim: OutputClaim, settings: WriterSettings,
                      progress: ProgressFn | None, chunk: int = 16) -> RenderReport:
    """Write frames the pipeline decoded itself (a loop that feeds its decoded frames back has
    them in memory anyway), a chunk at a time, to the claimed video."""
    hook = (lambda n, _b: progress("write", n, 0)) if progress else None
    writer = VideoWriter(claim.video, settings=settings, progress=hook, lock=claim.lock)
    t = time.perf_counter()
    with writer:
        for start in range(0, len(frames), chunk):
            writer.write(frames[start:start + chunk])
    shape = tuple(frames.shape)
    return RenderReport(path=str(claim.video), frames=writer.frames_written, height=int(shape[1]),
                        width=int(shape[2]), fps=float(settings.fps),
                        seconds={"write": time.perf_counter() - t},
                        peak_rss_bytes=peak_rss_bytes(), peak_cuda_bytes=cuda_peak_bytes(),
                        file_bytes=claim.video.stat().st_size)


def check_call(facts: PipelineFacts, pipe: Any, kwargs: dict[str, Any]) -> None:
    """Refuse, before denoising, a call the pipeline cannot make: a required input left out, a
    frame count its VAE cannot produce or its transformer cannot reach, a size that is not a
    multiple of the VAE's factor times the patch size, steps or sizes that are not positive
    (the same checks the CLI makes before loading)."""
    missing = facts.missing_inputs(kwargs)
    if missing:
        hints = ", ".join(f"{n}=... (CLI: {CLI_INPUTS.get(n, f'--arg {n}=VALUE')})"
                          for n in missing)
        raise InvalidOptions(f"{facts.pipeline_class} needs {hints}")
    for name in ("num_frames", "height", "width", "num_inference_steps"):
        value = kwargs.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidOptions(f"{name} must be a positive whole number, got {value!r}")
    frames = kwargs.get("num_frames")
    if frames is not None:
        problem = facts.frames_error(int(frames))
        if problem:
            raise InvalidOptions(problem)
        transformer = getattr(pipe, "transformer", None)
        if transformer is not None and facts.frame_rule:  # the model's reach (its rotary table)
            problem = frames_error(int(frames), transformer,
                                  temporal_factor=max(1, facts.temporal_factor),
                                  causal_first_frame=facts.causal_first_frame)
            if problem:
                raise InvalidOptions(problem)
    for name in ("height", "width"):
        if kwargs.get(name) is not None:
            problem = facts.size_error(name, int(kwargs[name]))
            if problem:
                raise InvalidOptions(problem)


def _frame_range(chunks: Any, first: int, count: int | None) -> Any:
    """The chunks' frames ``first`` to ``first + count``. The chunks after them are still
    decoded (a split decode's ranks run the same plan to its end), and dropped."""
    position, stop = 0, (None if count is None else first + count)
    for chunk in chunks:
        n = int(chunk.shape[0])
        lo = max(first - position, 0)
        hi = n if stop is None else min(stop - position, n)
        position += n
        if hi > lo:
            yield chunk if (lo, hi) == (0, n) else chunk[lo:hi]


def model_id_of(pipe: Any) -> str | None:
    """What ``vidmem decode`` should load the VAE from: the pipeline's path or hub id."""
    source = getattr(pipe, "_vidmem_model_id", None) or getattr(pipe, "name_or_path", None)
    return str(source) if source else None  # from_pretrained(Path(...)) keeps the Path


def pipeline_defaults(pipe: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The notable arguments (:data:`REPORTED_DEFAULTS`) left to ``pipe``'s own defaults."""
    params = inspect.signature(pipe.__call__).parameters
    return {name: params[name].default for name in REPORTED_DEFAULTS
            if name in params and name not in given
            and params[name].default not in (inspect.Parameter.empty, None)}


@split_job
def render(pipe: Any, out_path: str | Path, *, decode_options: DecodeOptions | None = None,
           writer_settings: WriterSettings | None = None, progress: ProgressFn | None = None,
           checkpoint: bool = True, keep_latents: bool = False, offload: Any = None,
           overwrite: bool = False, process_group: Any = None, fps: float | None = None,
           chunk_frames: int | None = None, overlap_frames: int | None = None,
           tile_size: int | None = None, tile_overlap: int | None = None,
           whole_clip_norm: WholeClipNorm = None, lossless: bool = False,
           writer_options: dict[str, Any] | None = None, oom_fallback: bool | None = None,
           memory_breakdown: bool | None = None, **pipeline_kwargs: Any) -> RenderReport:
    """Run ``pipe(**pipeline_kwargs)`` and stream its video into the MP4 ``out_path``.

    The pipeline's own call runs with its ``vae.decode`` captured (:mod:`vidmem.capture`): the
    latents it decodes are recorded, its post-processing runs on meta stand-ins, and the latents
    (its pieces joined into one clip) are decoded as ``decode_options``
    (:class:`vidmem.DecodeOptions`: temporal chunks, spatial tiles, whole-clip statistics; see
    :func:`vidmem.decode_latents`) say, each chunk written as soon as it is decoded, with
    ``writer_settings`` (:class:`vidmem.WriterSettings`; ``lossless=True`` writes frames that
    decode to exactly the uint8 values decoded, for checking; the default is H.264 yuv420p that
    any player opens). The keyword arguments from ``fps`` to ``memory_breakdown`` are shortcuts
    that override those values' fields (``writer_options``: a dict of writer fields).

    Before the pipeline runs, everything that can be checked is: the pipeline class, frame count,
    the decode options against the latent shape the pipeline will produce, the writer settings,
    and the output (:class:`vidmem.outputs.OutputClaim`: no other run writing it, no existing
    video, kept latents or partial stream of an earlier run unless ``overwrite``, a writable
    directory with room for the checkpoint).

    ``checkpoint``: after denoising, save the decode-ready latents next to the video
    (``clip.latents.safetensors``, with the decode options and writer settings, so ``vidmem
    decode`` resumes exactly as this render would have decoded; in the temp directory if that
    fails, with a note); they are removed after a successful write unless ``keep_latents``, and
    kept if the decode or write fails: :class:`vidmem.DecodeFailed` (or
    :class:`vidmem.DecodeInterrupted` for Ctrl-C) then names them, the partial stream, and the
    ``vidmem decode`` command that resumes.

    ``offload``: an :class:`~vidmem.OffloadPlan` (from :func:`vidmem.plan_offload`) to
    install for this render, or an already applied one; before the decode everything but the VAE
    leaves the device.

    ``fps``: the MP4's frame rate (default: the family's, e.g. Wan 16, LTX 24, SVD 7).

    ``process_group``: split this render over the ranks of a ``torch.distributed`` group (default:
    the world group when it is initialized with several processes; ``False``: render alone, e.g.
    one whole clip per rank). Every rank calls ``render`` with the same arguments and denoises
    (redundantly, unless the transformer was made context-parallel with
    :func:`vidmem.parallel.enable_context_parallel`); the decode of rank 0's latents is split
    among the ranks (:func:`decode_to_video`), and rank 0 alone claims the output and writes the
    video and the checkpoint. A failure on any rank stops every rank (:class:`vidmem.RankFailed`).

    Returns a :class:`RenderReport` (frames, seconds per stage, peak memory, the pipeline
    defaults that were used).
    """
    session: Session = process_group  # resolved by @split_job
    decode, writer = _with_shortcuts(decode_options, writer_settings, locals())
    facts = facts_for(pipe)  # not a video pipeline: fail before denoising
    out = check_video_path(out_path) if session.is_writer else Path(out_path)
    if "output_type" in pipeline_kwargs:
        raise InvalidOptions("render() sets output_type itself; do not pass it")
    call = call_arguments(pipe, dict(pipeline_kwargs, output_type="np"))  # bad names fail here
    if writer.fps is None:  # the rate the pipeline conditions on, else its family's
        writer = writer.with_(fps=facts.fps_for(call))
    check_call(facts, pipe, pipeline_kwargs)
    defaults = pipeline_defaults(pipe, pipeline_kwargs)
    expected = expected_vae_latents(pipe, call, facts)
    ckpt_bytes = margin_bytes = None
    if expected is not None:
        plan_decode(pipe.vae, expected, **decode.tiling())  # bad tiling fails now, not later
        sizes = [call.get(k) for k in ("num_frames", "height", "width")]
        buffers = (estimate_render_buffers(pipe.vae, *sizes, latent_dtype=expected.dtype,
                                           checkpoint=checkpoint,
                                           queue_size=writer.queue_size, **decode.tiling())
                   if all(isinstance(v, int) for v in sizes) else None)
        if buffers is not None:  # an impossible size is refused, with the numbers, right here
            check_render_fits(buffers, host_available=available_host_bytes())
            margin_bytes = buffers.disk_margin
        if checkpoint:  # the buffers' estimate sized it already, when the clip's size is known
            ckpt_bytes = (buffers.checkpoint if buffers is not None else
                          checkpoint_bytes(expected.shape, expected.dtype,
                                           cuda_rng=torch.cuda.is_available()))
    applied = None
    if offload is not None and not isinstance(offload, (OffloadPlan, AppliedPlan)):
        raise InvalidOptions(f"offload must be an OffloadPlan or AppliedPlan, got "
                             f"{type(offload).__name__}")
    # rank 0 alone owns the files of a split render; the others hold nothing
    claim = (OutputClaim(out, overwrite=overwrite, checkpoint_bytes=ckpt_bytes,
                         margin_bytes=margin_bytes)
             if session.is_writer else contextlib.nullcontext())
    with claim:
        notes = [f"replaced the partial stream {p} ({n} frames) left by an earlier run"
                 for p, n in (claim.replaced_partials if session.is_writer else ())]
        if offload is not None:
            applied = offload.apply(pipe) if isinstance(offload, OffloadPlan) else offload
        session.agree()  # --- scale-out (#14): every rank's inputs are valid before denoising
        if progress is not None and session.is_writer:
            progress("denoise", 0, 0)
        t0 = time.perf_counter()
        # the pipeline's own call, its decode captured (vidmem.capture)
        result, clip = run_capturing(pipe, pipeline_kwargs, warn=lambda m: log.warning("%s", m))
        t1 = time.perf_counter()
        vae_input = clip.decode_input
        del result
        if clip.own_frames is not None and session.is_writer:  # decoded in its loop already
            report = _write_own_frames(clip.own_frames, claim, writer, progress)
            report.seconds = {"denoise": t1 - t0, **report.seconds}
            report.defaults = defaults
            report.notes = notes + [f"{type(pipe).__name__} decoded its frames inside its loop "
                                    f"(it conditions on them); its own frames were written"]
            return report
        batch = vae_input.latents.shape[0] if vae_input.latents.ndim == 5 else 1
        if batch != 1:
            raise InvalidOptions(f"render writes one video; the pipeline decoded {batch} (use "
                                 f"num_videos_per_prompt=1 and a single prompt)")
        problem = non_finite_message(vae_input.latents, "the denoised latents")
        if problem:
            raise InvalidInput(problem)
        ckpt = None
        rng = clip.rng or capture_rng()  # where a noise-injecting decoder draws (see checkpoint)
        if checkpoint and session.is_writer:
            claim.release_reservation()  # the space held for the checkpoint is its now
            ckpt, note = save_checkpoint_anywhere(
                claim.files.latents, vae_input, model=model_id_of(pipe), family=facts.family,
                frames=clip.output_frames, rng_states=rng,
                extra={"first_frame": clip.first_frame} if clip.first_frame else None,
                vae_dtype=next(pipe.vae.parameters()).dtype, decode_options=decode,
                writer_settings=writer)
            if note:
                log.warning("%s", note)
                notes.append(note)
        if applied is not None:
            applied.prepare_for_decode()
        torch.set_rng_state(rng["cpu"])
        t2 = time.perf_counter()
        resume = (resume_command(ckpt, out, resume_flags(decode, writer)) if ckpt is not None
                  else None)
        try:
            report = decode_to_video(pipe.vae, vae_input.latents, out, decode_options=decode,
                                     writer_settings=writer,
                                     decode_kwargs=vae_input.decode_kwargs, progress=progress,
                                     overwrite=overwrite, process_group=session,
                                     frames=clip.frames, first_frame=clip.first_frame)
        except (DecodeFailed, DecodeInterrupted) as e:
            kept = _kept_message(e.partial, e.frames_played, ckpt, resume)
            reason = f"{e.reason} after denoising"
            lost = ("the latents were not saved (checkpoint=False)" if not checkpoint else
                    "the latents could not be saved anywhere")
            message = f"{reason}; " + (kept if ckpt is not None else
                                       "; ".join(filter(None, [lost, kept])))
            raise type(e)(message, ckpt, partial=e.partial, frames_played=e.frames_played,
                          resume=resume, reason=reason, stage=e.stage) from e.__cause__
        except Exception as e:  # e.g. another rank of a split decode failed before any frame
            if ckpt is None:
                raise
            reason = f"decoding failed after denoising ({type(e).__name__}: {e})"
            raise DecodeFailed(f"{reason}; {_kept_message(None, 0, ckpt, resume)}", ckpt,
                               resume=resume, reason=reason) from e
        if hasattr(pipe, "maybe_free_model_hooks"):
            pipe.maybe_free_model_hooks()
        if ckpt is not None and not keep_latents:
            ckpt.unlink(missing_ok=True)
    report.seconds = {"denoise": t1 - t0, "checkpoint": t2 - t1, **report.seconds}
    report.defaults = defaults
    report.latents_path = str(ckpt) if ckpt is not None and keep_latents else None
    report.notes = notes + report.notes
    return report
