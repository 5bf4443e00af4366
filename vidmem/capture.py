"""Decode capture: run a pipeline's own ``__call__`` and take the latents it hands its VAE.

Why: every pipeline prepares its latents for ``vae.decode`` in its own way (Wan's per-channel
statistics, LTX's unpacking, decode timestep and injected noise, CogVideoX's dropped padding
frames, SVD's frames folded into the batch, FramePack's sections, Helios' chunks). Instead of
re-implementing each, vidmem intercepts ``vae.decode`` for the duration of the call: the
interceptor records exactly the latents and arguments the pipeline decodes and returns a
stand-in of the decoded shape on the meta device (no memory, no compute), so the pipeline's own
post-processing (concatenating chunks, cross-fading sections, trimming frames) runs on shapes
only and never builds the frames. After the call, the recorded latents are joined into the one
clip they are pieces of (:func:`assemble`) and decoded by vidmem's streaming decode, trimmed to
the frame count the pipeline's post-processing arrived at.

A pipeline that decodes in several calls is joined by what the calls contain, not by what the
pipeline is: frame batches of an image VAE (AnimateDiff's ``decode_chunk_size``) are
concatenated; sections of a video VAE that continue or precede each other in time (Helios'
chunks appended, FramePack's sections prepended over an overlap) are joined where their latents
are equal; spatial tiles of one clip (LTX long multi-prompt's own tiling) are placed where their
overlaps agree. The joined clip is then decoded as a whole with carried causal state, so chunk
seams are those of a full decode of the final latents (for FramePack, unlike its own per-section
decodes cross-faded in pixels).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from .errors import UnsupportedModel
from .pipelines import DecodeInput


@dataclass
class CapturedDecode:
    """One ``vae.decode`` call of the pipeline: its latents and the other arguments it gave."""

    latents: torch.Tensor
    decode_kwargs: dict[str, Any]
    #: the shape of the stand-in returned (the decode's output shape).
    output_shape: tuple[int, ...]


@dataclass
class CapturedClip:
    """What a captured call decodes: one clip's decode input and the frames the pipeline keeps."""

    decode_input: DecodeInput
    #: frames the pipeline's output has (its post-processing may trim the decode's last frames:
    #: Helios and FramePack to ``4k+1``, LTX's last-frame fix); ``None``: all of them.
    frames: int | None
    #: how the calls were joined, for the report (``"1 decode call"``, ``"3 sections ..."``).
    joined: str
    calls: int = 1
    #: the pipeline's own output frames ``(T, H, W, 3)`` floats, when it ran with real decodes
    #: (it feeds decoded pixels back into its loop, so they exist already): written as they are.
    own_frames: Any = None
    #: the first decoded frame the pipeline's output keeps (HunyuanVideo I2V drops 4).
    first_frame: int = 0
    #: the RNG states at the pipeline's first ``vae.decode`` (see :attr:`DecodeCapture.rng`).
    rng: dict[str, Any] | None = None
    #: frames the decode of ``decode_input`` gives (before any trimming).
    total_frames: int | None = None

    @property
    def output_frames(self) -> int | None:
        """Frames of the video written: the pipeline's, or all the decode gives."""
        if self.frames is not None:
            return self.frames
        return None if self.total_frames is None else self.total_frames - self.first_frame


def _first_frame_of(video: torch.Tensor) -> int:
    """Where along time (dim 2) a view of a stand-in starts: its storage offset in frames
    (0 for a tensor of its own, e.g. a concatenation)."""
    if video.ndim != 5 or video.stride(2) <= 0:
        return 0
    return int(video.storage_offset() // video.stride(2))


def _clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and torch.equal(a.cpu(), b.cpu()))
    return a == b


class DecodeCapture:
    """While active, ``pipe.vae.decode`` records its inputs and returns meta stand-ins, and
    ``pipe.video_processor.postprocess_video`` hands its (meta) input back unchanged, recording
    its shape. Installed on the instances only, removed on exit, also when the call fails."""

    def __init__(self, pipe: Any, *, real: bool = False):
        self.pipe = pipe
        #: hand the pipeline real decodes (its own ``vae.decode``) instead of meta stand-ins,
        #: for pipelines that feed decoded pixels back into their loop (see :func:`run_capturing`).
        self.real = real
        self.vae = pipe.vae
        self.calls: list[CapturedDecode] = []
        #: shape of the video the pipeline post-processed, ``(B, C, T, H, W)``.
        self.final_shape: tuple[int, ...] | None = None
        #: the first decoded frame the post-processed video starts at (a slice of the stand-in,
        #: such as HunyuanVideo I2V's ``video[:, :, 4:]``, is a view that says where it starts).
        self.final_start = 0
        #: the RNG states when the pipeline first called ``vae.decode`` (a decoder that injects
        #: noise from the global generator draws from there, whatever the call does after).
        self.rng: dict[str, Any] | None = None
        self._installed: list[tuple[Any, str, Any, bool]] = []
        self._planning = False

    # --- installation ---------------------------------------------------------------------
    def _install(self, obj: Any, name: str, replacement: Any) -> Any:
        had = name in vars(obj)
        previous = vars(obj).get(name)
        original = getattr(obj, name)
        self._installed.append((obj, name, previous, had))
        setattr(obj, name, replacement)
        return original

    def __enter__(self) -> "DecodeCapture":
        self._decode = self._install(self.vae, "decode", self._capture_decode)
        self._signature = inspect.signature(self._decode)
        processor = getattr(self.pipe, "video_processor", None)
        if processor is not None and callable(getattr(processor, "postprocess_video", None)):
            self._postprocess = self._install(processor, "postprocess_video", self._capture_post)
        return self

    def __exit__(self, *exc: Any) -> None:
        for obj, name, previous, had in reversed(self._installed):
            if had:
                setattr(obj, name, previous)
            else:
                try:
                    delattr(obj, name)
                except AttributeError:
                    pass
        self._installed.clear()

    # --- the interceptors -----------------------------------------------------------------
    def _capture_decode(self, *args: Any, **kwargs: Any) -> Any:
        if self._planning:  # the generic adapter probes the VAE while the stand-in is shaped
            return self._decode(*args, **kwargs)
        from diffusers.models.autoencoders.vae import DecoderOutput

        bound = self._signature.bind(*args, **kwargs)
        arguments = dict(bound.arguments)
        first = next(iter(self._signature.parameters))
        latents = arguments.pop(first)
        return_dict = arguments.pop("return_dict", True)
        extra = arguments.pop("kwargs", None) or {}
        decode_kwargs = {k: _clone(v) for k, v in {**arguments, **extra}.items()}
        if not self.calls:  # where a noise-injecting decoder (LTX) would draw from
            from .checkpoint import capture_rng

            self.rng = capture_rng()
        if self.real:
            output = self._decode(*args, **kwargs)
            sample = output[0] if isinstance(output, (tuple, list)) else output.sample
            self.calls.append(CapturedDecode(_clone(latents), decode_kwargs, tuple(sample.shape)))
            return output
        shape = self._output_shape(latents, decode_kwargs)
        self.calls.append(CapturedDecode(_clone(latents), decode_kwargs, shape))
        param = next(self.vae.parameters(), None)
        stand_in = torch.empty(shape, device="meta",
                               dtype=param.dtype if param is not None else latents.dtype)
        return DecoderOutput(sample=stand_in) if return_dict else (stand_in,)

    def _capture_post(self, video: Any = None, *args: Any, **kwargs: Any) -> Any:
        if video is None:
            video = kwargs.pop("video", None)
        if isinstance(video, torch.Tensor):
            self.final_shape = tuple(video.shape)
            self.final_start = _first_frame_of(video)
            if video.is_meta:
                return video
        return self._postprocess(video, *args, **kwargs)

    def _output_shape(self, latents: torch.Tensor, decode_kwargs: dict) -> tuple[int, ...]:
        """The shape ``vae.decode`` would return for these latents, from the family adapter."""
        from .decode import plan_decode
        from .decode.families import adapter_for

        self._planning = True
        try:
            plan = plan_decode(self.vae, latents, decode_kwargs=decode_kwargs,
                               free_device_bytes=None)
            adapter = adapter_for(self.vae, decode_kwargs)
            batch = latents.shape[0] if latents.ndim == 5 else 1
            pixels = torch.empty(batch, 3, plan.frames, plan.height, plan.width, device="meta")
            return tuple(adapter.from_canonical(pixels, plan.facts).shape)
        finally:
            self._planning = False

    # --- the result -----------------------------------------------------------------------
    def clip(self, returned: Any = None) -> CapturedClip:
        """The clip the call decoded: its calls joined, and the frames its output keeps."""
        name = type(self.pipe).__name__
        if not self.calls:
            raise UnsupportedModel(
                f"{name} returned without calling vae.decode, so vidmem saw no latents to "
                f"stream (vidmem captures the pipeline's own decode; a pipeline that decodes "
                f"another way cannot be rendered)")
        decode_input, joined = assemble(self.calls, name)
        shape = self.final_shape
        if shape is None:
            frames = getattr(returned, "frames", None)
            if frames is None and isinstance(returned, (tuple, list)) and returned:
                frames = returned[0]
            if isinstance(frames, torch.Tensor) and frames.is_meta and frames.ndim == 5:
                shape = tuple(frames.shape)
                self.final_start = _first_frame_of(frames)
        full = self._output_shape(decode_input.latents, decode_input.decode_kwargs)
        total = full[2] if len(full) == 5 else full[0]  # frames in the batch: 4-D output
        kept, first = None, 0
        if shape is not None and len(shape) == 5:
            frames, height, width = shape[2], shape[3], shape[4]
            first = self.final_start
            if (height, width) != tuple(full[-2:]) or first + frames > total:
                raise UnsupportedModel(
                    f"{name} post-processes its decoded frames in a way vidmem cannot follow: "
                    f"the decode gives {total} frames of {full[-1]}x{full[-2]}, its output has "
                    f"{frames} frames of {width}x{height}")
            kept = frames if first or frames < total else None
        return CapturedClip(decode_input, kept, joined, calls=len(self.calls),
                            total_frames=int(total), rng=self.rng, first_frame=first)


def assemble(calls: list[CapturedDecode], pipeline: str = "the pipeline") -> tuple[DecodeInput,
                                                                                   str]:
    """Join the decode calls of one pipeline call into one clip's decode input."""
    if len(calls) == 1:
        return DecodeInput(calls[0].latents, calls[0].decode_kwargs), "1 decode call"
    kwargs = calls[0].decode_kwargs
    varying = {k for c in calls[1:] for k in set(kwargs) | set(c.decode_kwargs)
               if not _same(kwargs.get(k), c.decode_kwargs.get(k))}
    latents = [c.latents for c in calls]
    if latents[0].ndim == 4:  # frames in the batch (image VAEs, SVD): batches in order
        if varying - {"num_frames"}:
            raise UnsupportedModel(f"{pipeline} decoded {len(calls)} frame batches with different "
                                   f"arguments ({', '.join(sorted(varying))}); vidmem cannot join "
                                   f"them")
        joined = dict(kwargs)
        if "num_frames" in kwargs:
            joined["num_frames"] = sum(int(c.decode_kwargs["num_frames"]) for c in calls)
        return (DecodeInput(torch.cat(latents, dim=0), joined),
                f"{len(calls)} frame batches joined")
    if varying:
        raise UnsupportedModel(f"{pipeline} decoded {len(calls)} pieces with different arguments "
                               f"({', '.join(sorted(varying))}); vidmem cannot join them")
    if len({z.shape[2] for z in latents}) == 1:  # equal lengths: tiles, if they place as tiles
        try:
            return DecodeInput(_join_tiles(latents, pipeline), dict(kwargs)), \
                f"{len(calls)} spatial tiles joined"
        except UnsupportedModel:
            if len({z.shape[3:] for z in latents}) != 1:
                raise
    if len({z.shape[3:] for z in latents}) == 1:
        return DecodeInput(_join_in_time(latents, pipeline), dict(kwargs)), \
            f"{len(calls)} sections joined in time"
    raise UnsupportedModel(f"{pipeline} decoded {len(calls)} pieces that differ in both length "
                           f"and size; vidmem cannot join them")


def _join_in_time(pieces: list[torch.Tensor], pipeline: str) -> torch.Tensor:
    """Sections of one clip along time (dim 2): each new one continues the clip (its head equal
    to the clip's tail), precedes it (its tail equal to the clip's head), repeats a stretch of it,
    or, sharing nothing, follows it."""
    clip = pieces[0]
    for piece in pieces[1:]:
        t_clip, t_piece = clip.shape[2], piece.shape[2]
        if t_piece <= t_clip and any(torch.equal(clip[:, :, i:i + t_piece], piece)
                                     for i in range(t_clip - t_piece + 1)):
            continue  # decoded again (FramePack's first section, re-decoded with later ones)
        for k in range(min(t_clip, t_piece), 0, -1):
            if torch.equal(clip[:, :, t_clip - k:], piece[:, :, :k]):
                clip = torch.cat([clip, piece[:, :, k:]], dim=2)
                break
            if torch.equal(piece[:, :, t_piece - k:], clip[:, :, :k]):
                clip = torch.cat([piece[:, :, :t_piece - k], clip], dim=2)
                break
        else:
            clip = torch.cat([clip, piece], dim=2)
    return clip


def _join_tiles(tiles: list[torch.Tensor], pipeline: str) -> torch.Tensor:
    """Spatial tiles of one clip in row-major order, each placed where its overlap with what is
    placed already agrees exactly (a tile starts a new row at column 0 when it does not continue
    the current one)."""
    placed: list[tuple[int, int, torch.Tensor]] = []
    height = width = 0

    def fits(y: int, x: int, tile: torch.Tensor) -> bool:
        h, w = tile.shape[3], tile.shape[4]
        overlapped = False
        for py, px, other in placed:
            y0, y1 = max(y, py), min(y + h, py + other.shape[3])
            x0, x1 = max(x, px), min(x + w, px + other.shape[4])
            if y0 < y1 and x0 < x1:
                overlapped = True
                if not torch.equal(tile[..., y0 - y:y1 - y, x0 - x:x1 - x],
                                   other[..., y0 - py:y1 - py, x0 - px:x1 - px]):
                    return False
        return overlapped

    row_y = 0
    for i, tile in enumerate(tiles):
        if i == 0:
            placed.append((0, 0, tile))
            continue
        py, px, prev = placed[-1]
        candidates = [(py, x) for x in range(px + 1, px + prev.shape[4] + 1)]
        row_h = max(t.shape[3] for y, _, t in placed if y == row_y)
        candidates += [(y, 0) for y in range(row_y + 1, row_y + row_h + 1)]
        spot = next(((y, x) for y, x in candidates if fits(y, x, tile)), None)
        if spot is None:
            raise UnsupportedModel(f"{pipeline} decoded {len(tiles)} spatial tiles whose overlaps "
                                   f"vidmem cannot place; it cannot join them")
        if spot[1] == 0:
            row_y = spot[0]
        placed.append((spot[0], spot[1], tile))
    height = max(y + t.shape[3] for y, _, t in placed)
    width = max(x + t.shape[4] for _, x, t in placed)
    first = tiles[0]
    clip = first.new_zeros(*first.shape[:3], height, width)
    covered = torch.zeros(height, width, dtype=torch.bool)
    for y, x, tile in placed:
        clip[..., y:y + tile.shape[3], x:x + tile.shape[4]] = tile
        covered[y:y + tile.shape[3], x:x + tile.shape[4]] = True
    if not bool(covered.all()):
        raise UnsupportedModel(f"{pipeline}'s {len(tiles)} spatial tiles leave gaps; vidmem "
                               f"cannot join them")
    return clip


#: pipeline classes found, in this process, to feed decoded pixels back into their loop.
_FEEDS_PIXELS_BACK: set[str] = set()


def _meta_error(error: BaseException) -> bool:
    """An error a stand-in can cause: a meta tensor used as pixels (in arithmetic with real
    tensors, copied out, or handed to numpy as a safety checker does)."""
    return isinstance(error, (RuntimeError, NotImplementedError, TypeError, AttributeError,
                              ValueError, IndexError))


def _generators(value: Any) -> list[torch.Generator]:
    if isinstance(value, torch.Generator):
        return [value]
    if isinstance(value, (list, tuple)):
        return [g for g in value if isinstance(g, torch.Generator)]
    return []


def run_capturing(pipe: Any, kwargs: dict[str, Any], *, output_type: str = "np",
                  warn: Any = None) -> tuple[Any, CapturedClip]:
    """``pipe(output_type=..., **kwargs)`` with its decode captured; returns its result and the
    captured clip.

    A pipeline that uses its decoded frames inside its loop (WanAnimate conditions each segment
    on the previous segment's last decoded frames) cannot run on meta stand-ins: the first such
    use fails with a meta-device error. The call is then run again from the same random states
    with real decodes (the pipeline's own ``vae.decode``: the loop's frames cost what they cost
    without vidmem; the video is still written by the streaming decode of the captured latents),
    and the class is remembered for the rest of the process. ``warn(message)`` is told."""
    name = type(pipe).__name__
    generators = _generators(kwargs.get("generator"))
    states = [g.get_state() for g in generators]
    cpu_state = torch.get_rng_state()
    real = name in _FEEDS_PIXELS_BACK
    while True:
        with DecodeCapture(pipe, real=real) as capture:
            try:
                result = pipe(output_type=output_type, **kwargs)
            except Exception as e:
                if real or not capture.calls or not _meta_error(e):
                    raise
                _FEEDS_PIXELS_BACK.add(name)
                if warn is not None:
                    warn(f"{name} uses its decoded frames after decoding them ({type(e).__name__}: "
                         f"{e}); running it again with real decodes, and writing its own frames "
                         f"(they take the memory they take without vidmem)")
                for g, state in zip(generators, states):
                    g.set_state(state)
                torch.set_rng_state(cpu_state)
                real = True
                continue
        clip = capture.clip(result)
        if real:
            frames = getattr(result, "frames", None)
            if frames is None and isinstance(result, (tuple, list)):
                frames = result[0]
            clip.own_frames = frames[0] if frames is not None else None
        return result, clip
