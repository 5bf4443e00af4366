"""Orchestration: run the pipeline to latents, decode them chunk by chunk, stream to an MP4.

Why not ``pipe(...)`` then ``export_to_video``: the pipeline would decode the whole clip at once
(device memory grows with clip length) and hand back every frame as float32 on the host (host
memory grows with clip length, 4x the size of the video in uint8). Here the pipeline stops at
latents, and each decoded chunk goes to the writer as uint8 and is dropped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoint import capture_rng, checkpoint_path_for, save_checkpoint
from .decode import decode_latents, plan_decode
from .decode.fallback import decode_with_fallback
from .io.writer import VideoWriter
from .memory import cuda_peak_bytes, format_bytes, peak_rss_bytes
from .parallel import DecodeSplit, split_job
from .pipelines import DecodeInput, call_arguments, rule_for

log = logging.getLogger("vidmem")

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: ``"decode"`` (frames decoded), ``"write"``
(frames written)."""


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

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
        lines += [f"retried: {r}" for r in self.retries]
        return "\n".join(lines)


def check_output_path(out_path: str | Path) -> Path:
    """Fail before any work if the MP4 could not be written there."""
    out = Path(out_path)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"output path {str(out)!r} must end in .mp4")
    if not out.parent.exists():
        raise FileNotFoundError(f"output directory {str(out.parent)!r} does not exist; create it "
                                f"first")
    if out.is_dir():
        raise IsADirectoryError(f"output path {str(out)!r} is a directory; name an .mp4 file")
    return out


@split_job
def decode_to_video(vae: torch.nn.Module, latents: torch.Tensor, path: str | Path, fps: float = 16,
                    *, chunk_frames: int | None = None, overlap_frames: int | None = None,
                    tile_size: int | None = None, tile_overlap: int | None = None,
                    lossless: bool = False, decode_kwargs: dict | None = None,
                    progress: ProgressFn | None = None,
                    writer_options: dict[str, Any] | None = None,
                    oom_fallback: bool = True, process_group: Any = None) -> RenderReport:
    """Decode ``latents`` (what ``vae.decode`` takes) straight into an MP4 at ``path``.

    Only one chunk of frames is alive at a time; the writer encodes chunk ``k`` on its thread
    while chunk ``k + 1`` decodes. Tiling options are those of :func:`vidmem.decode_latents`.
    ``oom_fallback``: on an out-of-memory error, retry with smaller chunks, then smaller tiles
    (:mod:`vidmem.decode.fallback`), each retry logged and listed in the report's ``retries``.

    ``process_group``: share the decode among the ranks of this ``torch.distributed`` group
    (default: the world group when it is initialized with several processes; ``False``: this
    process alone). Every rank calls this; each decodes its share of the tiles (or windows) of
    rank 0's latents, and rank 0 blends them exactly as one process would, writes ``path`` and
    returns its report (the other ranks write nothing: their reports have ``frames=0``). A failure
    on any rank raises :class:`vidmem.parallel.RankFailed` on every rank (see
    :mod:`vidmem.parallel`).
    """
    split = process_group  # resolved by @split_job: a SplitSession, or None for one process
    work = None
    if split is not None:  # --- scale-out (#14): every rank decodes rank 0's inputs, rank 0 writes
        from .parallel.decode import share_decode_input

        latents, decode_kwargs, tile_size = share_decode_input(
            split, vae, latents, decode_kwargs, dict(chunk_frames=chunk_frames, overlap_frames=
                                                     overlap_frames, tile_size=tile_size,
                                                     tile_overlap=tile_overlap))
        work = DecodeSplit(split)
        progress = progress if split.is_writer else None
    path = check_output_path(path) if split is None or split.is_writer else Path(path)
    seconds: dict[str, float] = {}
    retries: list[str] = []
    options = dict(chunk_frames=chunk_frames, overlap_frames=overlap_frames, tile_size=tile_size,
                   tile_overlap=tile_overlap, decode_kwargs=decode_kwargs, split=work,
                   progress=(lambda d, t: progress("decode", d, t)) if progress else None)
    if oom_fallback:
        def on_retry(message: str) -> None:
            retries.append(message)
            if split is None or split.is_writer:
                log.warning("%s", message)

        plan_decode(vae, latents, **{k: v for k, v in options.items()
                                     if k not in ("progress", "split")})
        chunks = decode_with_fallback(vae, latents, on_retry=on_retry, **options)
    else:
        chunks = decode_latents(vae, latents, output_type="uint8", **options)
    if split is not None and not split.is_writer:  # --- scale-out (#14): decode a share, no file
        from .parallel.decode import run_share

        t = time.perf_counter()
        run_share(chunks)
        split.agree()  # rank 0 has written the file
        return RenderReport(path=str(path), frames=0, height=0, width=0, fps=float(fps),
                            seconds={"decode": time.perf_counter() - t},
                            peak_rss_bytes=peak_rss_bytes(), peak_cuda_bytes=cuda_peak_bytes(),
                            retries=retries)
    decode_s = write_s = 0.0
    height = width = 0
    writer_progress = (lambda n, _b: progress("write", n, 0)) if progress else None
    with VideoWriter(path, fps, lossless=lossless, progress=writer_progress,
                     **(writer_options or {})) as writer:
        t = time.perf_counter()
        try:
            for chunk in chunks:
                t1 = time.perf_counter()
                decode_s += t1 - t
                height, width = int(chunk.shape[1]), int(chunk.shape[2])
                writer.write(chunk)
                del chunk
                t = time.perf_counter()
                write_s += t - t1
        except BaseException as e:
            if work is not None:  # --- scale-out (#14): the other ranks stop too
                work.stop(e)
            raise
        t1 = time.perf_counter()
    write_s += time.perf_counter() - t1  # the close: draining the queue, finalizing the file
    if split is not None:  # --- scale-out (#14): the file is complete; the other ranks may return
        split.agree()
    seconds["decode"] = decode_s
    seconds["write"] = write_s
    return RenderReport(path=str(path), frames=writer.frames_written, height=height, width=width,
                        fps=float(fps), seconds=seconds, peak_rss_bytes=peak_rss_bytes(),
                        peak_cuda_bytes=cuda_peak_bytes(), retries=retries,
                        file_bytes=path.stat().st_size if path.exists() else 0)


class DecodeFailed(RuntimeError):
    """The decode or write failed after denoising; the latents were kept at ``checkpoint``."""

    def __init__(self, message: str, checkpoint: Path | None):
        super().__init__(message)
        self.checkpoint = checkpoint


def model_id_of(pipe: Any) -> str | None:
    """What ``vidmem decode`` should load the VAE from: the pipeline's path or hub id."""
    return getattr(pipe, "_vidmem_model_id", None) or getattr(pipe, "name_or_path", None) or None


def latents_for_decode(pipe: Any, latents: torch.Tensor, **call_kwargs: Any) -> DecodeInput:
    """Undo ``pipe``'s latent normalization exactly as its own ``__call__`` would.

    ``latents``: what ``pipe(..., output_type="latent", **call_kwargs)`` returned. ``call_kwargs``
    must be the arguments of that call (LTX needs its sizes and generator, CogVideoX its frame
    count)."""
    return rule_for(pipe).to_vae_input(pipe, latents, call_arguments(pipe, call_kwargs))


@split_job
def render(pipe: Any, out_path: str | Path, *, fps: float | None = None, chunk_frames: int | None = None,
           overlap_frames: int | None = None, tile_size: int | None = None,
           tile_overlap: int | None = None, lossless: bool = False,
           progress: ProgressFn | None = None, checkpoint: bool = True,
           keep_latents: bool = False, offload: Any = None, process_group: Any = None,
           **pipeline_kwargs: Any) -> RenderReport:
    """Run ``pipe(**pipeline_kwargs)`` and stream its video into the MP4 ``out_path``.

    The pipeline runs with ``output_type="latent"``; its latents are denormalized exactly as the
    pipeline would before ``vae.decode`` and decoded in temporal chunks of ``chunk_frames`` pixel
    frames (see :func:`vidmem.decode_latents` for the tiling options), each chunk written as soon
    as it is decoded. ``lossless=True`` writes frames that decode to exactly the uint8 values
    decoded (for checking); the default is H.264 yuv420p that any player opens.

    ``checkpoint``: after denoising, save the decode-ready latents next to the video
    (``clip.latents.safetensors``); it is removed after a successful write unless
    ``keep_latents``, and kept if the decode or write fails, in which case :class:`DecodeFailed`
    says the ``vidmem decode`` command that resumes.

    ``offload``: an :class:`~vidmem.offload.OffloadPlan` (from :func:`vidmem.plan_offload`) to
    install for this render, or an already applied one; before the decode everything but the VAE
    leaves the device.

    ``fps``: the MP4's frame rate (default: the family's, e.g. Wan 16, LTX 24, SVD 7).

    ``process_group``: split this render over the ranks of a ``torch.distributed`` group (default:
    the world group when it is initialized with several processes; ``False``: render alone, e.g.
    one whole clip per rank). Every rank calls ``render`` with the same arguments and denoises
    (redundantly, unless the transformer was made context-parallel with
    :func:`vidmem.parallel.enable_context_parallel`); the decode of rank 0's latents is split
    among the ranks (:func:`decode_to_video`), and rank 0 alone writes the video and the
    checkpoint. A failure on any rank stops every rank (:class:`vidmem.parallel.RankFailed`).

    Returns a :class:`RenderReport` (frames, seconds per stage, peak memory).
    """
    split = process_group  # resolved by @split_job: a SplitSession, or None for one process
    rule = rule_for(pipe)  # unsupported pipeline: fail before denoising
    out = check_output_path(out_path) if split is None or split.is_writer else Path(out_path)
    fps = rule.default_fps if fps is None else fps
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    if "output_type" in pipeline_kwargs:
        raise ValueError("render() sets output_type itself; do not pass it")
    frames = pipeline_kwargs.get("num_frames")
    if frames is not None and rule.frames_error(int(frames)):
        raise ValueError(rule.frames_error(int(frames)))
    if rule.needs_image and pipeline_kwargs.get("image") is None:
        raise ValueError(f"{type(pipe).__name__} is image-to-video: pass image=... (CLI: --image "
                         f"PATH)")
    call = call_arguments(pipe, dict(pipeline_kwargs, output_type="latent"))  # bad names fail here
    applied = None
    if offload is not None:
        from .offload import AppliedPlan, OffloadPlan

        applied = offload.apply(pipe) if isinstance(offload, OffloadPlan) else offload
        if not isinstance(applied, AppliedPlan):
            raise TypeError(f"offload must be an OffloadPlan or AppliedPlan, got "
                            f"{type(offload).__name__}")
    if split is not None:  # --- scale-out (#14): every rank's inputs are valid before denoising
        split.agree()
    t0 = time.perf_counter()
    result = pipe(output_type="latent", **pipeline_kwargs)
    latents = result.frames if hasattr(result, "frames") else result[0]
    t1 = time.perf_counter()
    if latents.shape[0] != 1:
        raise ValueError(f"render writes one video; the pipeline returned {latents.shape[0]} "
                         f"(use num_videos_per_prompt=1 and a single prompt)")
    vae_input = rule.to_vae_input(pipe, latents, call)
    del latents, result
    ckpt = None
    rng = capture_rng()  # where a noise-injecting decoder starts drawing (see checkpoint)
    if checkpoint and (split is None or split.is_writer):
        ckpt = save_checkpoint(checkpoint_path_for(out), vae_input, model=model_id_of(pipe),
                               family=rule.family, fps=fps,
                               frames=call.get("num_frames"), rng_states=rng)
    if applied is not None:
        applied.prepare_for_decode()
    torch.set_rng_state(rng["cpu"])
    t2 = time.perf_counter()
    try:
        report = decode_to_video(pipe.vae, vae_input.latents, out, fps, chunk_frames=chunk_frames,
                                 overlap_frames=overlap_frames, tile_size=tile_size,
                                 tile_overlap=tile_overlap, lossless=lossless,
                                 decode_kwargs=vae_input.decode_kwargs, progress=progress,
                                 process_group=split if split is not None else False)
    except Exception as e:
        if ckpt is None:
            raise
        raise DecodeFailed(f"decoding failed after denoising ({type(e).__name__}: {e}); the "
                           f"latents are kept: resume with `vidmem decode {ckpt} --out {out}`",
                           ckpt) from e
    if hasattr(pipe, "maybe_free_model_hooks"):
        pipe.maybe_free_model_hooks()
    if ckpt is not None and not keep_latents:
        ckpt.unlink(missing_ok=True)
    report.seconds = {"denoise": t1 - t0, "checkpoint": t2 - t1, **report.seconds}
    return report
