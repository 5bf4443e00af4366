"""A streaming, constant-memory, crash-safe MP4 writer (PyAV).

Why not ``diffusers.utils.export_to_video``: it needs the whole clip as a list in RAM, truncates
floats to uint8, and pipes through an ffmpeg subprocess. ``VideoWriter`` takes the clip a chunk at
a time and keeps at most ``queue_size`` chunks in memory, whatever the clip's length.

How a file is written:

* Each ``write(chunk)`` is validated and converted to uint8 in the caller's thread, then queued
  as the writer's own copy (the caller may reuse its buffer at once; the queue is bounded:
  when the encoder falls behind, ``write`` blocks - backpressure).
* A background thread feeds the chunks to one long-lived encoder. The first frame of every chunk
  is forced to be a keyframe (an IDR frame for H.264/H.265: nothing after it refers to anything
  before it), so each chunk's packets precede the next chunk's in the stream. Packets go to
  ``<path>.partial.ts``, an MPEG transport stream flushed packet by packet, as the encoder emits
  them. An encoder holds back a few dozen frames (its lookahead and B-frame reordering), so a
  chunk's last packets usually come out while the next chunk is being encoded; when the writer
  runs out of input for ``flush_after`` seconds it drains the encoder instead (every frame given
  so far reaches the disk) and the next chunk starts a fresh encoder. So the encoder restarts only
  when the writer is idle anyway (a CPU decode between chunks), never while it is the bottleneck.
* A chunk is *completed* once all of its packets are in the partial file: then the progress hook
  is called for it and ``frames_written`` covers it. If the process dies (even SIGKILL), the
  partial file plays up to at least the last completed chunk.
* ``close()`` drains the encoder and copies the partial stream's packets (no re-encode, one pass)
  into a normal MP4 with its index at the front (seekable, right duration and frame count, plays
  in browsers: the space for the index is reserved ahead of the data, so no second pass moves
  the file) at a temp name, renames it onto ``path`` atomically and removes the partial. So
  ``path`` exists only when complete; a failed or aborted writer never leaves a file at ``path``.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np

from ..errors import (InvalidInput, InvalidOptions, OutputDirectoryMissing, OutputError,
                      WriterError)
from ..files import ClipFiles, OutputLock
from ..memory import release_host_memory
from .frames import to_uint8_frames
from .settings import (CODECS, DEFAULT_CRF, DEFAULT_PRESET, VIDEO_SUFFIXES, WriterSettings,
                       available_encoders, exact_fps, key_is_av1)

__all__ = ["CODECS", "VideoWriter", "WriterError", "WriterSettings", "available_encoders",
           "exact_fps"]

log = logging.getLogger("vidmem")


ProgressHook = Callable[[int, int], None]
"""``progress(frames_written, bytes_written)``, called on the encoder thread after each chunk."""

class VideoWriter:
    """Stream frames into an MP4 with bounded memory; see the module docstring for guarantees.

    Parameters:
        path: output ``.mp4`` (or ``.mov``/``.m4v``); its directory must exist.
        fps: frames per second; fractional rates are kept exactly (23.976 -> 24000/1001).
        codec: ``"h264"`` (default: libx264, yuv420p, plays everywhere), ``"h265"``, ``"av1"``
            (whichever AV1 encoder the installed PyAV has).
        crf: constant rate factor (lower = better); default 18 for H.264, 22 for H.265, 30 AV1.
        preset: encoder speed preset (default ``"fast"`` for x264/x265).
        lossless: write frames whose decoded RGB equals the input exactly (H.264 RGB,
            ``libx264rgb`` with ``qp=0``); ignores ``codec``/``crf``.
        queue_size: chunks that may wait for the encoder; ``write`` blocks beyond that.
        progress: ``progress(frames_written, bytes_written)`` after each completed chunk.
        options: extra encoder options passed to FFmpeg (e.g. ``{"tune": "film"}``).
        flush_after: seconds the encoder thread waits for the next chunk before draining the
            encoder so that every chunk given so far is completed (on disk). Lower: chunks reach
            the disk sooner when input pauses; higher: fewer encoder restarts.

    ``write(frames)`` accepts the layouts in :mod:`vidmem.io.frames`. yuv420p needs even sizes:
    odd widths/heights are padded by one pixel, replicating the last column/row (the file is
    then one pixel larger); lossless RGB needs no padding. All frames must share one size.

    While open, the writer holds ``path``'s output lock (``clip.mp4.lock`` beside it,
    :class:`vidmem.files.OutputLock`): a writer (or a render) of the same path in another
    process fails at once with :class:`vidmem.OutputInUse` instead of interleaving its frames
    with these. ``lock``: an :class:`~vidmem.files.OutputLock` the caller already holds for
    ``path`` (a render's claim), which the writer holds once more instead of taking its own. The
    writer's hold goes at ``close``/``abort`` or when the process dies.

    ``settings``: a :class:`vidmem.WriterSettings` (validated when built); the keyword arguments
    ``fps``, ``codec``, ... are shortcuts that override its fields (default fps: 16).

    A chunk that fails validation raises :class:`vidmem.InvalidInput` (a ``ValueError``; of the
    wrong type, :class:`vidmem.InvalidInputType`, also a ``TypeError``) in the caller, nothing of
    it is written, and the writer stays usable. An encoder failure raises :class:`WriterError`
    at the next ``write``/``close``; the writer is then failed: ``close`` removes nothing but
    creates no file at ``path`` (the partial file is kept for inspection).
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction | None = None, *,
                 settings: WriterSettings | None = None, codec: str | None = None,
                 crf: int | None = None, preset: str | None = None, lossless: bool | None = None,
                 queue_size: int | None = None, options: dict[str, str] | None = None,
                 flush_after: float | None = None, progress: ProgressHook | None = None,
                 lock: OutputLock | None = None):
        settings = WriterSettings.build(settings, fps=fps, codec=codec, crf=crf, preset=preset,
                                        lossless=lossless, queue_size=queue_size,
                                        options=options, flush_after=flush_after)
        if settings.fps is None:
            settings = settings.with_(fps=16)
        #: the validated settings this writer writes with.
        self.settings = settings
        self.path = Path(path)
        self.rate = settings.rate
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise InvalidOptions(f"output path {str(self.path)!r} must end in .mp4 (or "
                                 f".mov/.m4v)")
        if not self.path.parent.is_dir():
            raise OutputDirectoryMissing(f"output directory {str(self.path.parent)!r} does not "
                                         f"exist; create it first")
        if self.path.is_dir():
            raise OutputError(f"output path {str(self.path)!r} is a directory")
        self.flush_after = float(settings.flush_after)
        self.lossless = settings.lossless
        self.encoder = settings.encoder
        if settings.lossless:
            self.pix_fmt = "rgb24"
            self.options = {"qp": "0", "preset": settings.preset or "veryfast"}
        else:
            self.pix_fmt = "yuv420p"
            self.options = {}
            crf = DEFAULT_CRF.get(self.encoder) if settings.crf is None else settings.crf
            if crf is not None:
                self.options["crf"] = str(crf)
            preset = DEFAULT_PRESET.get(self.encoder) if settings.preset is None \
                else settings.preset
            if preset is not None:
                self.options["preset"] = str(preset)
        if self.encoder in ("libx264", "libx264rgb", "libx265"):
            # A forced keyframe (pict_type I, set per chunk) becomes an IDR frame, not a
            # recovery-point I frame: the chunk boundary is a clean cut in the stream.
            self.options["forced-idr"] = "1"
        self.options.update({k: str(v) for k, v in settings.options.items()})
        # The partial stream's container: MPEG-TS (written packet by packet, readable after a crash)
        # for H.264/H.265; IVF, AV1's elementary container, for AV1 (TS does not carry it).
        self._partial_format = "ivf" if key_is_av1(self.encoder) else "mpegts"
        self.partial_path = ClipFiles(self.path).partial(self._partial_format)
        self._progress = progress
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=settings.queue_size)
        self._error: BaseException | None = None
        self._size: tuple[int, int] | None = None  # (height, width) of the input frames
        self._frames_queued = 0
        #: frames of the chunks completed so far (all their packets are in the partial file).
        self.frames_written = 0
        self.bytes_written = 0
        self._closed = False
        # No other process writes this file meanwhile: the lock the caller holds (a render's
        # claim) held once more, or the writer's own.
        if lock is not None and lock.files.video.resolve() != self.path.resolve():
            raise InvalidOptions(f"the lock given to the writer is {lock.files.lock}, not "
                                 f"{self.path}'s")
        self._output_lock = lock.again() if lock is not None else OutputLock(self.path).acquire()
        self._thread = threading.Thread(target=self._encode_loop, name="vidmem-writer", daemon=True)
        self._thread.start()

    # --- caller side ----------------------------------------------------------------------
    def write(self, frames: Any) -> None:
        """Queue a chunk of frames (blocks while ``queue_size`` chunks are waiting)."""
        if self._closed:
            raise InvalidOptions("write() on a closed VideoWriter")
        self._raise_if_failed()
        chunk = to_uint8_frames(frames)
        if chunk.shape[0] == 0:
            return
        if chunk is frames or not chunk.flags.owndata:
            # The caller's memory (a uint8 array or tensor, or a view of one; or the tensor a
            # float chunk was converted in): queue a copy the writer owns. The caller may reuse its
            # buffer once write() returns without changing frames still waiting to be encoded,
            # and the caller's tensor is freed on the caller's thread, where torch's profiler
            # sees it (a free on the encoder thread is invisible to vidmem.breakdown, whose live
            # tensors then grew by one chunk per chunk written). A memcpy per chunk: ~5 ms for
            # 16 frames of 480x832 on this project's 2-core machine.
            chunk = chunk.copy()
        size = (int(chunk.shape[1]), int(chunk.shape[2]))
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise InvalidInput(f"frame size changed mid-stream: {size[1]}x{size[0]} after "
                             f"{self._size[1]}x{self._size[0]}; all frames of a video must match")
        while True:
            try:
                self._queue.put(chunk, timeout=0.2)
                break
            except queue.Full:
                self._raise_if_failed()
        self._frames_queued += chunk.shape[0]

    def close(self) -> Path:
        """Finish encoding, write the final MP4 at ``path`` and return it."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            self._stop_thread()
            self._raise_if_failed()
            if self._frames_queued == 0:
                self._remove_partial()
                raise InvalidInput(f"no frames were written; {str(self.path)!r} was not created")
            try:
                _remux_to_mp4(self.partial_path, self.path, self.rate, self.encoder,
                              self._frames_queued, self._reorder_delay)
            except Exception as e:
                raise WriterError(f"could not finalize {str(self.path)!r} from "
                                  f"{str(self.partial_path)!r}: {e}") from e
            self._remove_partial()
        finally:
            self._output_lock.release()
        return self.path

    def abort(self) -> None:
        """Stop without finishing: remove the partial file; ``path`` is not created."""
        self._closed = True
        try:
            self._stop_thread(drain=False)
            self._remove_partial()
        finally:
            self._output_lock.release()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            # The caller failed mid-clip: keep what was encoded for inspection, finalize nothing.
            self._closed = True
            try:
                self._stop_thread(drain=False)
            finally:
                self._output_lock.release()

    # --- internals ------------------------------------------------------------------------
    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise WriterError(f"video encoding failed: {self._error}") from self._error

    def _stop_thread(self, drain: bool = True) -> None:
        if not drain:
            while True:  # drop pending chunks so the sentinel fits
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.2)
                break
            except queue.Full:
                if self._error is not None:
                    break
        self._thread.join()

    def _remove_partial(self) -> None:
        try:
            self.partial_path.unlink()
        except FileNotFoundError:
            pass

    def _encode_loop(self) -> None:
        self._container = None
        self._encoder: av.CodecContext | None = None
        self._frames_fed = 0  # frames given to an encoder (the next frame's pts)
        self._packets_out = 0  # packets in the partial file (one per frame, in decode order)
        # how many packets a frame's packet can come after its frame number (B-frame reordering):
        # the MP4's decode timestamps are ``packet index - reorder_delay``, which stays monotonic
        # across encoder restarts, where the encoders' own timestamps overlap
        self._reorder_delay = 0
        self._pending: deque[int] = deque()  # end frame of each chunk not yet completed
        try:
            while True:
                try:  # an idle writer with an open encoder drains it after flush_after seconds
                    chunk = self._queue.get(timeout=self.flush_after if self._encoder else None)
                except queue.Empty:
                    self._drain()
                    continue
                if chunk is None:
                    break
                if self._container is None:
                    self._open(chunk.shape[1], chunk.shape[2])
                self._encode_chunk(chunk)
                del chunk
                release_host_memory()  # the chunk's frames and conversions, back to the OS
            self._drain()
        except BaseException as e:  # noqa: BLE001 - surfaced to the caller, never lost
            self._error = e
        finally:
            if self._container is not None:
                try:
                    self._container.close()
                except Exception as e:  # noqa: BLE001
                    self._error = self._error or e
            if self._error is not None:  # unblock a caller waiting on a full queue
                while True:
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        break

    def _padded_size(self, height: int, width: int) -> tuple[int, int]:
        if self.pix_fmt == "yuv420p":
            return height + height % 2, width + width % 2
        return height, width

    def _open(self, height: int, width: int) -> None:
        h, w = self._padded_size(height, width)
        if (h, w) != (height, width):
            log.warning("padding %dx%d frames to %dx%d for yuv420p (even sizes only)",
                        width, height, w, h)
        container = av.open(str(self.partial_path), "w", format=self._partial_format,
                            options={"flush_packets": "1"})
        stream = container.add_stream(self.encoder, rate=self.rate)
        stream.width, stream.height, stream.pix_fmt = w, h, self.pix_fmt
        stream.time_base = 1 / self.rate
        self._stream_size = (h, w)
        self._container, self._stream = container, stream

    def _new_encoder(self) -> av.CodecContext:
        cc = av.CodecContext.create(self.encoder, "w")
        cc.height, cc.width = self._stream_size
        cc.pix_fmt = self.pix_fmt
        cc.time_base = 1 / self.rate
        cc.framerate = self.rate
        cc.options = dict(self.options)
        if self.encoder in ("libx264", "libx264rgb", "libx265"):
            # PyAV opens encoders with slice threading, which makes x264 split every frame into
            # slices: ~10% slower at 480x832 on 2 cores and a 4% larger file than x264's own frame
            # threading (what the ffmpeg command line uses)
            cc.thread_type = "FRAME"
        cc.open()
        return cc

    def _encode_chunk(self, chunk: np.ndarray) -> None:
        """Feed one chunk to the encoder (its first frame a keyframe) and mux what comes out."""
        h, w = self._stream_size
        if chunk.shape[1:3] != (h, w):
            chunk = np.pad(chunk, ((0, 0), (0, h - chunk.shape[1]), (0, w - chunk.shape[2]),
                                   (0, 0)), mode="edge")
        if self._encoder is None:
            self._encoder = self._new_encoder()
        for i, frame_array in enumerate(chunk):
            frame = av.VideoFrame.from_ndarray(frame_array, format="rgb24")
            frame.pts = self._frames_fed
            frame.time_base = 1 / self.rate
            if i == 0:
                frame.pict_type = av.video.frame.PictureType.I
            self._frames_fed += 1
            self._mux(self._encoder.encode(frame))
        self._pending.append(self._frames_fed)
        self._complete_chunks()

    def _drain(self) -> None:
        """Flush the encoder: every frame fed so far reaches the partial file."""
        if self._encoder is None:
            return
        encoder, self._encoder = self._encoder, None
        self._mux(encoder.encode(None))
        self._complete_chunks()
        release_host_memory()  # the encoder's frame pool and lookahead buffers

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            if packet.pts is not None:  # in frames: the encoder's time base is 1/fps
                self._reorder_delay = max(self._reorder_delay, self._packets_out - packet.pts)
            packet.stream = self._stream
            self._container.mux(packet)
            self._packets_out += 1
        if packets:
            self._complete_chunks()

    def _complete_chunks(self) -> None:
        """Report the chunks whose packets are all in the partial file (the keyframe at each
        chunk start keeps a chunk's packets before the next chunk's, so a count suffices)."""
        while self._pending and self._packets_out >= self._pending[0]:
            self.frames_written = self._pending.popleft()
            self.bytes_written = self.partial_path.stat().st_size
            if self._progress is not None:
                self._progress(self.frames_written, self.bytes_written)


#: Bytes reserved for the MP4 index (``moov``) per frame, and for its fixed part: a sample's size,
#: decode-time and composition-offset entries, its chunk offset and keyframe flag take at most
#: ~25 bytes (measured: 13-21 for H.264 with B-frames and a keyframe every 16 frames).
MOOV_BYTES_PER_FRAME = 32
MOOV_BYTES_FIXED = 8192


def _remux_to_mp4(source: Path, target: Path, rate: Fraction, encoder_name: str,
                  frames: int, reorder_delay: int = 0) -> None:
    """Copy the partial stream's packets into an MP4 with its index at the front (no re-encode),
    then rename it onto ``target``.

    One pass over the packets: presentation timestamps are converted back to frame units (time
    base ``1/fps``; the transport stream carries them in 90 kHz ticks) and rebased so the first
    frame is at 0; decode timestamps are the packet's index minus ``reorder_delay`` (the
    largest lag of a packet behind its frame, counted while writing), not the stream's own:
    an encoder drained and reopened mid-clip starts its decode timestamps below the previous
    encoder's last ones, which the MP4 muxer would "fix" by bending the frame durations. The index's space is reserved before the data (``moov_size``, from the frame
    count), which puts it at the front without ``+faststart``'s second pass over the whole file;
    if the estimate were ever too small, the muxer refuses and the copy is redone with
    ``+faststart``.
    """
    reserve = MOOV_BYTES_FIXED + MOOV_BYTES_PER_FRAME * frames
    try:
        _copy_packets(source, target, rate, encoder_name, reorder_delay,
                      {"moov_size": str(reserve)})
    except (av.FFmpegError, OSError) as e:
        log.warning("MP4 index larger than reserved (%s); finalizing with +faststart", e)
        _copy_packets(source, target, rate, encoder_name, reorder_delay,
                      {"movflags": "+faststart"})


def _copy_packets(source: Path, target: Path, rate: Fraction, encoder_name: str,
                  reorder_delay: int, mp4_options: dict[str, str]) -> None:
    # The format is named: a short transport stream (a few frames) is too small to be probed.
    src_format = "ivf" if source.suffix == ".ivf" else "mpegts"
    tmp = target.with_name(target.name + ".tmp" + target.suffix)
    try:
        with av.open(str(source), format=src_format) as src, \
                av.open(str(tmp), "w", format="mp4", options=mp4_options) as dst:
            in_stream = src.streams.video[0]
            try:  # copies the codec parameters, extradata (SPS/PPS) included
                out_stream = dst.add_stream_from_template(in_stream, rate=rate)
            except Exception:  # noqa: BLE001 - e.g. AV1, whose decoder (dav1d) has no encoder twin
                out_stream = dst.add_stream(encoder_name, rate=rate)
                cc = out_stream.codec_context
                cc.width, cc.height = in_stream.width, in_stream.height
                cc.pix_fmt = in_stream.codec_context.pix_fmt
                cc.extradata = in_stream.codec_context.extradata
            out_stream.time_base = 1 / rate
            to_frames = in_stream.time_base * rate
            first = None
            index = 0
            for packet in src.demux(in_stream):
                if packet.pts is None:
                    continue  # the demuxer's end-of-stream marker
                if first is None:  # the first packet is a keyframe: the smallest pts of its GOP
                    first = packet.pts
                packet.pts = round((packet.pts - first) * to_frames)
                packet.dts = index - reorder_delay
                index += 1
                packet.duration = 1
                packet.time_base = 1 / rate
                packet.stream = out_stream
                dst.mux(packet)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
