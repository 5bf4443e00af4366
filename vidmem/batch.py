"""Batch renders: many clips from a prompts file, whole clips per rank, resumable.

Why whole clips per rank: with several GPUs (or machines) and many prompts, the fastest way
through the list is one pipeline per rank, each rendering whole clips with no communication at
all (throughput scales with the ranks); splitting one clip (:mod:`vidmem.parallel`) only pays
when a single clip's latency matters.

* **The prompts file**: one prompt per line, or one JSON object per line with per-clip settings
  (``prompt``, ``name``, ``seed``, ``num_frames``, ``height``, ``width``, ``negative_prompt``,
  ``guidance_scale``, ``steps``); blank lines and ``#`` comments are skipped. Errors name the
  line.
* **Deterministic names and seeds**: clip ``i`` (0-based, in file order) is
  ``DIR/{i:04d}-{slug of the prompt}.mp4`` (or its ``name``) and uses ``seed`` or
  ``base_seed + i``, whichever rank renders it, so a clip equals the same clip rendered alone.
* **Division among ranks**: rank 0 decides which clips still need work and deals them out
  longest first to the least-loaded rank (cost: frames x height x width); the plan is shared once.
* **Resumable**: a clip whose MP4 exists is complete (the writer creates it only when finished)
  and is skipped; a clip with kept latents (``name.latents.safetensors``: it stopped after
  denoising) is decoded from them with :func:`vidmem.load_checkpoint` and
  :func:`vidmem.decode_to_video`; any other clip is rendered. Nothing is overwritten.
* **A failing clip fails alone**: its error goes into the manifest and the next clip starts.
* **The manifest** (``DIR/manifest.json``): one record per clip (status, what was done, seed,
  sizes, rank, seconds, error), rewritten after every change of any clip, atomically (temp file +
  rename) under a lock file, so ranks on one machine or on a shared file system never lose each
  other's updates.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoint import load_checkpoint
from .decode.options import DecodeOptions, WholeClipNorm
from .errors import (InvalidInput, InvalidOptions, OutputDirectoryMissing, PromptsFileError,
                     UnsupportedModel)
from .files import ClipFiles, FileLock
from .io.settings import WriterSettings
from .parallel import Session, SplitSession
from .parallel.session import describe
from .pipelines import facts_for
from .rendering import model_id_of, render
from .resume import resume_decode

log = logging.getLogger("vidmem")

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "vidmem-batch"
MANIFEST_VERSION = 1

#: keys a JSON line may set, and their types.
CLIP_KEYS: dict[str, tuple[type, ...]] = {
    "prompt": (str,), "name": (str,), "seed": (int,), "num_frames": (int,), "height": (int,),
    "width": (int,), "negative_prompt": (str,), "guidance_scale": (int, float), "steps": (int,),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class ClipSpec:
    """One clip of a batch: what to render and where (``DIR/{name}.mp4``)."""

    index: int
    name: str
    seed: int
    line: int
    prompt: str | None = None
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    negative_prompt: str | None = None
    guidance_scale: float | None = None
    steps: int | None = None

    @property
    def filename(self) -> str:
        return self.name + ".mp4"

    def pipeline_args(self) -> dict[str, Any]:
        """The pipeline arguments this clip sets (those it leaves out keep the batch's)."""
        args = {"prompt": self.prompt, "negative_prompt": self.negative_prompt,
                "num_frames": self.num_frames, "height": self.height, "width": self.width,
                "guidance_scale": self.guidance_scale, "num_inference_steps": self.steps}
        return {k: v for k, v in args.items() if v is not None}


def slug(text: str, max_len: int = 40) -> str:
    """A file-name-safe, lowercase, dash-separated summary of ``text`` (at most ``max_len``)."""
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > max_len:
            break
        out = candidate
    return out or (words[0][:max_len] if words else "")


def parse_prompts(text: str, *, base_seed: int = 0, source: str = "prompts") -> list[ClipSpec]:
    """The clips of a prompts file's ``text`` (see the module docstring); ``source`` names the
    file in error messages."""
    clips: list[ClipSpec] = []
    names: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {lineno}"
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise PromptsFileError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") \
                    from None
            for key, value in entry.items():
                if key not in CLIP_KEYS:
                    raise PromptsFileError(f"{where}: unknown key {key!r} (allowed: "
                                           f"{', '.join(CLIP_KEYS)})")
                if not isinstance(value, CLIP_KEYS[key]) or isinstance(value, bool):
                    kind = "a number" if float in CLIP_KEYS[key] else (
                        "an integer" if int in CLIP_KEYS[key] else "a string")
                    raise PromptsFileError(f"{where}: {key!r} must be {kind}, got "
                                           f"{json.dumps(value)}")
            for key in ("num_frames", "height", "width", "steps"):
                if key in entry and entry[key] < 1:
                    raise PromptsFileError(f"{where}: {key!r} must be positive, got {entry[key]}")
            if "guidance_scale" in entry and not math.isfinite(entry["guidance_scale"]):
                raise PromptsFileError(f"{where}: 'guidance_scale' must be finite")
            if not str(entry.get("prompt", "")).strip() and "name" not in entry:
                raise PromptsFileError(f"{where}: give a 'prompt' (or at least a 'name')")
        else:
            entry = {"prompt": line}
        index = len(clips)
        name = entry.get("name") or f"{index:04d}-{slug(entry.get('prompt') or '') or 'clip'}"
        if name.lower().endswith(".mp4"):
            name = name[:-4]
        if not _NAME_RE.match(name):
            raise PromptsFileError(f"{where}: name {name!r} must be 1-100 letters, digits, '.', "
                                   f"'_' or '-' (no directories)")
        if name in names:
            raise PromptsFileError(f"{where}: name {name!r} is already used on line "
                                   f"{names[name]}")
        names[name] = lineno
        clips.append(ClipSpec(
            index=index, name=name, line=lineno, seed=entry.get("seed", base_seed + index),
            prompt=entry.get("prompt"), num_frames=entry.get("num_frames"),
            height=entry.get("height"), width=entry.get("width"),
            negative_prompt=entry.get("negative_prompt"),
            guidance_scale=(float(entry["guidance_scale"]) if "guidance_scale" in entry
                            else None), steps=entry.get("steps")))
    if not clips:
        raise PromptsFileError(f"{source}: no prompts (one per line, or JSON lines)")
    return clips


def read_prompts(path: str | os.PathLike, *, base_seed: int = 0) -> list[ClipSpec]:
    """:func:`parse_prompts` of the file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptsFileError(f"prompts file {str(p)!r} does not exist") from None
    except UnicodeDecodeError as e:
        raise PromptsFileError(f"prompts file {str(p)!r} is not UTF-8 text ({e.reason})") \
            from None
    return parse_prompts(text, base_seed=base_seed, source=str(p))


# --- dividing the work ---------------------------------------------------------------------
def clip_cost(clip: ClipSpec, defaults: dict[str, float]) -> float:
    """Relative work of a clip: frames x height x width (a size it leaves to the pipeline counts
    as ``defaults[name]``)."""
    return math.prod(float(getattr(clip, k) or defaults.get(k, 1.0))
                     for k in ("num_frames", "height", "width"))


def assign_clips(clips: list[ClipSpec], size: int,
                 defaults: dict[str, float] | None = None) -> list[list[ClipSpec]]:
    """Deal ``clips`` to ``size`` ranks: longest first, each to the least-loaded rank (ties: the
    lower rank); each rank's clips are then in file order. Deterministic."""
    if defaults is None:
        defaults = {}
        for key in ("num_frames", "height", "width"):
            known = [getattr(c, key) for c in clips if getattr(c, key) is not None]
            defaults[key] = sum(known) / len(known) if known else 1.0
    loads = [0.0] * size
    shares: list[list[ClipSpec]] = [[] for _ in range(size)]
    for clip in sorted(clips, key=lambda c: (-clip_cost(c, defaults), c.index)):
        rank = min(range(size), key=lambda r: (loads[r], r))
        loads[rank] += clip_cost(clip, defaults)
        shares[rank].append(clip)
    return [sorted(share, key=lambda c: c.index) for share in shares]


# --- the state of a clip on disk, and the manifest ------------------------------------------
def clip_state(clip: ClipSpec, out_dir: Path) -> str:
    """``"complete"`` (its MP4 exists), ``"latents"`` (kept latents, no MP4), ``"new"``."""
    files = ClipFiles(out_dir / clip.filename)
    if files.video.exists():
        return "complete"
    if files.latents.exists():
        return "latents"
    return "new"


class Manifest:
    """``DIR/manifest.json``: a header and one record per clip, keyed by name.

    Every change is a read-modify-write under an exclusive lock on ``manifest.json.lock`` (a
    blocking :class:`vidmem.files.FileLock`, between processes on one machine and on a shared
    file system), written to a temporary file and renamed over the manifest, so readers never see
    half a file and ranks never lose each other's records.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / MANIFEST_NAME
        self._lock_path = self.path.with_name(MANIFEST_NAME + ".lock")

    def _locked(self) -> FileLock:
        # kept on release: another rank may be waiting on this very file
        return FileLock(self._lock_path, blocking=True, remove_on_release=False)

    def read(self) -> dict[str, Any]:
        """The manifest (an empty one if there is none yet)."""
        if not self.path.exists():
            return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "clips": {}}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InvalidInput(f"{str(self.path)!r} is not a readable manifest ({e}); move it "
                               f"away to start a new one") from None
        if data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("clips"), dict):
            raise InvalidInput(f"{str(self.path)!r} is not a vidmem batch manifest; move it away "
                               f"to start a new one")
        return data

    def update(self, clips: dict[str, dict[str, Any]] | None = None,
               header: dict[str, Any] | None = None) -> None:
        """Merge ``clips`` (name -> fields) and ``header`` fields into the manifest, atomically."""
        with self._locked():
            data = self.read()
            data.update(header or {})
            for name, fields in (clips or {}).items():
                data["clips"].setdefault(name, {}).update(fields)
            data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            tmp = self.path.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=2) + "\n")
            tmp.replace(self.path)


# --- running a batch -------------------------------------------------------------------------
@dataclass
class BatchReport:
    """What a batch did: every clip's manifest record, in file order."""

    out_dir: str
    manifest: str
    clips: list[dict[str, Any]] = field(default_factory=list)
    #: from the moment every rank had its share of the clips to the moment all were done.
    seconds: float = 0.0
    ranks: int = 1

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.clips if c.get("status") != "done"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        actions: dict[str, int] = {}
        for c in self.clips:
            if c.get("status") == "done":
                actions[c.get("action", "done")] = actions.get(c.get("action", "done"), 0) + 1
        done = ", ".join(f"{n} {a}" for a, n in sorted(actions.items()))
        lines = [f"batch: {len(self.clips)} clips in {self.out_dir} ({self.ranks} rank"
                 f"{'s' if self.ranks > 1 else ''}, {self.seconds:.1f}s): "
                 f"{len(self.clips) - len(self.failed)} done ({done or 'none'}), "
                 f"{len(self.failed)} failed"]
        lines += [f"failed: {c['file']}: {c.get('error')}" for c in self.failed]
        lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)


def _record(clip: ClipSpec, out_dir: Path) -> dict[str, Any]:
    return {"index": clip.index, "file": str(out_dir / clip.filename), "line": clip.line,
            "seed": clip.seed, **clip.pipeline_args()}


def render_batch(pipe: Any, clips: list[ClipSpec], out_dir: str | os.PathLike, *,
                 decode_options: DecodeOptions | None = None,
                 writer_settings: WriterSettings | None = None, keep_latents: bool = False,
                 call_for: Callable[[ClipSpec], dict[str, Any]] | None = None,
                 on_clip: Callable[[dict[str, Any]], None] | None = None,
                 process_group: Any = None, fps: float | None = None,
                 chunk_frames: int | None = None, overlap_frames: int | None = None,
                 tile_size: int | None = None, tile_overlap: int | None = None,
                 whole_clip_norm: WholeClipNorm = None, lossless: bool = False,
                 memory_breakdown: bool | None = None, **pipeline_kwargs: Any) -> BatchReport:
    """Render ``clips`` into ``out_dir``, dividing them among the ranks of ``process_group``.

    Every rank calls this with the same clips (each with its own ``pipe``); each clip is rendered
    by one rank, alone (:func:`vidmem.render` with ``process_group=False``). ``process_group``:
    default the world group when ``torch.distributed`` is initialized with several processes, else
    this process renders every clip; ``False``: this process renders every clip. The final
    exchange of results waits for the slowest rank under the group's timeout.

    A clip's pipeline call is ``pipeline_kwargs`` updated with the clip's settings and a
    generator seeded with its seed (and the global RNG seeded with it, for decoders that inject
    noise); ``call_for(clip)`` replaces that with a call of your own (the CLI uses it to build
    exactly the call ``vidmem render`` would). ``on_clip(record)`` is told of each clip this rank
    finishes. ``decode_options`` and ``writer_settings`` reach every clip whole, rendered or
    resumed from kept latents (:func:`vidmem.resume.resume_decode`: a resumed clip decodes with
    the settings its checkpoint recorded, overridden by the fields given here); the keyword
    arguments from ``fps`` on are shortcuts over them, as in :func:`vidmem.render`. Returns a
    :class:`BatchReport` (on every rank, with every clip's record).
    """
    session: Session = SplitSession.resolve(process_group)
    decode = DecodeOptions.build(decode_options, chunk_frames=chunk_frames,
                                 overlap_frames=overlap_frames, tile_size=tile_size,
                                 tile_overlap=tile_overlap, whole_clip_norm=whole_clip_norm,
                                 memory_breakdown=memory_breakdown)
    writer = WriterSettings.build(writer_settings, fps=fps, lossless=lossless)
    out = Path(out_dir)
    manifest = Manifest(out)
    facts = facts_for(pipe)
    if writer.fps is None:
        writer = writer.with_(fps=facts.default_fps)

    def plan() -> list[list[ClipSpec]]:
        if not out.is_dir():
            raise OutputDirectoryMissing(f"output directory {str(out)!r} does not exist; "
                                         f"create it first")
        for clip in clips:
            if clip.num_frames is not None and facts.frames_error(clip.num_frames):
                raise InvalidOptions(f"clip {clip.name} (line {clip.line}): "
                                     f"{facts.frames_error(clip.num_frames)}")
        records = {}
        pending = []
        for clip in clips:
            state = clip_state(clip, out)
            record = {**_record(clip, out), "error": None}
            if state == "complete":
                record.update(status="done", action="already complete")
            else:
                record.update(status="pending", action="pending")
                pending.append(clip)
            records[clip.name] = record
        manifest.update(records, header={"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                                         "ranks": session.size, "clips_total": len(clips)})
        return assign_clips(pending, session.size)

    with session.guard():
        shares = session.share(plan() if session.is_writer else None)
    started = time.perf_counter()  # every rank has its share: the batch's own time starts

    if call_for is None:
        def call_for(clip: ClipSpec) -> dict[str, Any]:
            return {**pipeline_kwargs, **clip.pipeline_args(),
                    "generator": torch.Generator().manual_seed(clip.seed)}

    # An error that escapes a clip (an interrupt, a manifest that cannot be written) stops every
    # rank at the final agreement instead of leaving them waiting there.
    with session.guard():
        for clip in shares[session.rank]:
            record = _render_one(pipe, clip, out, manifest, session.rank, call_for,
                                 model_id_of(pipe), decode, writer, keep_latents)
            if on_clip is not None:
                on_clip(record)
        session.agree()  # every rank has finished its clips: the manifest is final
    final = manifest.read()["clips"]
    records = [dict(final.get(c.name, {}), name=c.name) for c in clips]
    return BatchReport(out_dir=str(out), manifest=str(manifest.path), clips=records,
                       seconds=time.perf_counter() - started, ranks=session.size)


def _render_one(pipe: Any, clip: ClipSpec, out: Path, manifest: Manifest, rank: int,
                call_for: Callable[[ClipSpec], dict[str, Any]], model_id: str | None,
                decode: DecodeOptions, writer: WriterSettings,
                keep_latents: bool) -> dict[str, Any]:
    """One clip on this rank: skip, resume from latents or render; failures are recorded."""
    files = ClipFiles(out / clip.filename)
    where = {"rank": rank, "host": socket.gethostname()}
    t0 = time.perf_counter()
    state = clip_state(clip, out)
    if state == "complete":  # finished since the plan was made (e.g. by another run)
        record = {"status": "done", "action": "already complete", "error": None}
        manifest.update({clip.name: record})
        return {**_record(clip, out), **record, "name": clip.name}
    manifest.update({clip.name: {"status": "running", **where, "error": None}})
    try:
        if state == "latents":
            ckpt = load_checkpoint(files.latents)
            if ckpt.model and model_id and ckpt.model != model_id:
                raise UnsupportedModel(f"its kept latents {files.latents.name} come from "
                                       f"{ckpt.model}, not {model_id}; delete them to render "
                                       f"the clip again")
            report = resume_decode(ckpt, files.video, vae=pipe.vae, decode_options=decode,
                                   writer_settings=writer, process_group=False)
            if not keep_latents:
                files.latents.unlink(missing_ok=True)
            action = "resumed from latents"
        else:
            torch.manual_seed(clip.seed)  # as `vidmem render --seed` does, for noise-injecting VAEs
            report = render(pipe, files.video, decode_options=decode, writer_settings=writer,
                            keep_latents=keep_latents, process_group=False, **call_for(clip))
            action = "rendered"
        record = {"status": "done", "action": action, "error": None, "frames": report.frames,
                  "seconds": round(time.perf_counter() - t0, 3),
                  "peak_rss_bytes": report.peak_rss_bytes}
    except Exception as e:  # noqa: BLE001 - a failing clip fails alone; the batch goes on
        log.debug("clip %s failed", clip.name, exc_info=True)
        record = {"status": "failed", "action": "failed", "error": describe(e),
                  "seconds": round(time.perf_counter() - t0, 3),
                  "latents_kept": files.latents.exists()}
    manifest.update({clip.name: {**record, **where}})
    return {**_record(clip, out), **record, **where, "name": clip.name}
