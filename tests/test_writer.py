"""VideoWriter: exact lossless round trip, quality, layouts, fps, errors, threading, crash safety."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from vidmem import VideoWriter, WriterError, available_encoders
from vidmem.metrics import psnr
from video_utils import read_video


def smooth_clip(n=24, h=64, w=96, seed=0):
    """Moving gradients: what a codec should reproduce well."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = np.arange(n, dtype=np.float32)[:, None, None]
    r = 0.5 + 0.4 * np.sin(xx / 30 + t / 5)
    g = 0.5 + 0.4 * np.cos(yy / 30 - t / 7)
    b = 0.5 + 0.4 * np.sin((xx + yy) / 60 + t / 3 + seed)
    return np.rint(np.stack([r, g, b], -1) * 255).astype(np.uint8)


def write_chunks(path, frames, chunk=8, **kwargs):
    with VideoWriter(path, kwargs.pop("fps", 16), **kwargs) as w:
        for i in range(0, len(frames), chunk):
            w.write(frames[i:i + chunk])
    return w


def test_lossless_round_trip_is_exact(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (20, 48, 80, 3), dtype=np.uint8)
    write_chunks(tmp_path / "x.mp4", frames, chunk=7, lossless=True)
    got, rate = read_video(tmp_path / "x.mp4")
    assert got.shape == frames.shape and rate == 16
    assert np.array_equal(got, frames)


def test_default_h264_quality_on_smooth_content(tmp_path):
    frames = smooth_clip()
    write_chunks(tmp_path / "x.mp4", frames)
    got, _ = read_video(tmp_path / "x.mp4")
    with av.open(str(tmp_path / "x.mp4")) as c:
        cc = c.streams.video[0].codec_context
        assert cc.name == "h264" and cc.pix_fmt == "yuv420p"
    assert psnr(torch.from_numpy(got), torch.from_numpy(frames), 255.0) > 40


def test_every_accepted_layout_gives_the_same_file_content(tmp_path):
    u8 = smooth_clip(n=9)
    as_float01 = u8.astype(np.float32) / 255.0
    as_vae = torch.from_numpy(u8).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    layouts = {
        "uint8_numpy": u8,
        "uint8_tensor": torch.from_numpy(u8),
        "float01_numpy": as_float01,
        "float01_numpy_batched": as_float01[None],
        "vae_tensor": as_vae,
    }
    decoded = {}
    for name, data in layouts.items():
        with VideoWriter(tmp_path / f"{name}.mp4", 16, lossless=True) as w:
            w.write(data)
        decoded[name], _ = read_video(tmp_path / f"{name}.mp4")
    # single frames (H, W, 3), one call each
    with VideoWriter(tmp_path / "single.mp4", 16, lossless=True) as w:
        for frame in u8:
            w.write(frame)
    decoded["single_frames"], _ = read_video(tmp_path / "single.mp4")
    for name, got in decoded.items():
        assert np.array_equal(got, u8), name


def test_floats_are_rounded_not_truncated(tmp_path):
    value = np.full((1, 16, 16, 3), 100.7 / 255, dtype=np.float32)
    with VideoWriter(tmp_path / "x.mp4", 16, lossless=True) as w:
        w.write(value)
    got, _ = read_video(tmp_path / "x.mp4")
    assert (got == 101).all()


@pytest.mark.parametrize("fps, expected", [(16, Fraction(16)), (23.976, Fraction(24000, 1001)),
                                           (Fraction(30000, 1001), Fraction(30000, 1001)),
                                           (12.5, Fraction(25, 2))])
def test_fps_is_kept_exactly(tmp_path, fps, expected):
    frames = smooth_clip(n=10)
    write_chunks(tmp_path / "x.mp4", frames, fps=fps)
    with av.open(str(tmp_path / "x.mp4")) as c:
        s = c.streams.video[0]
        assert s.average_rate == expected
        assert s.frames == 10
        assert float(s.duration * s.time_base) == pytest.approx(10 / float(expected), abs=1e-3)


def test_odd_sizes_are_padded_for_yuv420p_and_kept_for_lossless(tmp_path):
    frames = smooth_clip(n=6, h=33, w=47)
    write_chunks(tmp_path / "lossy.mp4", frames)
    lossy, _ = read_video(tmp_path / "lossy.mp4")
    assert lossy.shape == (6, 34, 48, 3)
    write_chunks(tmp_path / "exact.mp4", frames, lossless=True)
    exact, _ = read_video(tmp_path / "exact.mp4")
    assert np.array_equal(exact, frames)


@pytest.mark.parametrize("codec", sorted(set(available_encoders()) - {"h264"}))
def test_other_codecs_round_trip(tmp_path, codec):
    frames = smooth_clip(n=8, h=64, w=64)
    write_chunks(tmp_path / "x.mp4", frames, codec=codec)
    got, _ = read_video(tmp_path / "x.mp4")
    assert got.shape == frames.shape
    assert psnr(torch.from_numpy(got), torch.from_numpy(frames), 255.0) > 30


@pytest.mark.parametrize("make, message", [
    (lambda p: VideoWriter(p, 0), "fps must be positive"),
    (lambda p: VideoWriter(p, -3), "fps must be positive"),
    (lambda p: VideoWriter(p.parent / "nope" / "x.mp4", 16), "does not exist"),
    (lambda p: VideoWriter(p, 16, codec="prores9000"), "unknown codec 'prores9000'; available: "),
    (lambda p: VideoWriter(p.with_suffix(".gif"), 16), "must end in .mp4"),
])
def test_construction_errors(tmp_path, make, message):
    with pytest.raises((ValueError, OSError), match=message):
        make(tmp_path / "x.mp4")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad, message", [
    (np.zeros((16, 16), np.uint8), "must be \\(T, H, W, 3\\)"),
    (np.zeros((2, 16, 16, 4), np.uint8), "3 \\(RGB\\) channels"),
    (np.full((2, 16, 16, 3), np.nan, np.float32), "NaN or inf"),
    (torch.full((1, 3, 2, 16, 16), float("inf")), "NaN or inf"),
    (torch.zeros(2, 16, 16, 3), "VAE's decode output"),
    (torch.zeros(2, 3, 2, 16, 16), "one video at a time"),
    (np.zeros((2, 16, 16, 3), np.int32), "not supported"),
    ([1, 2, 3], "numpy array or a torch tensor"),
])
def test_bad_chunks_are_refused_before_anything_is_written(tmp_path, bad, message):
    with VideoWriter(tmp_path / "x.mp4", 16) as w:
        with pytest.raises((ValueError, TypeError), match=message):
            w.write(bad)
        assert w.frames_written == 0
        w.write(np.zeros((2, 16, 16, 3), np.uint8))  # still usable
    got, _ = read_video(tmp_path / "x.mp4")
    assert len(got) == 2


def test_frame_size_change_mid_stream_is_refused(tmp_path):
    with VideoWriter(tmp_path / "x.mp4", 16) as w:
        w.write(np.zeros((2, 16, 16, 3), np.uint8))
        with pytest.raises(ValueError, match="frame size changed mid-stream: 32x16 after 16x16"):
            w.write(np.zeros((2, 16, 32, 3), np.uint8))


def test_encoder_thread_exception_reaches_the_caller(tmp_path, monkeypatch):
    def boom(self, *args):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(VideoWriter, "_encode_chunk", boom)
    w = VideoWriter(tmp_path / "x.mp4", 16)
    w.write(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(WriterError, match="encoder exploded") as info:
        for _ in range(10):  # the failure surfaces at the next write or at close
            w.write(np.zeros((2, 16, 16, 3), np.uint8))
            time.sleep(0.05)
        w.close()
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(WriterError):
        w.close()
    assert not (tmp_path / "x.mp4").exists()


def test_backpressure_bounds_the_queue(tmp_path, monkeypatch):
    original = VideoWriter._encode_chunk
    gate = threading.Event()
    max_seen = []

    def slow(self, chunk):
        gate.wait(0.3)
        max_seen.append(self._queue.qsize())
        original(self, chunk)

    monkeypatch.setattr(VideoWriter, "_encode_chunk", slow)
    frames = smooth_clip(n=24, h=16, w=16)
    with VideoWriter(tmp_path / "x.mp4", 16, queue_size=2) as w:
        for i in range(0, 24, 2):
            w.write(frames[i:i + 2])
            assert w._queue.qsize() <= 2
    assert max(max_seen) <= 2
    assert len(read_video(tmp_path / "x.mp4")[0]) == 24


def test_progress_hook_reports_frames_and_bytes(tmp_path):
    calls = []
    write_chunks(tmp_path / "x.mp4", smooth_clip(n=20), chunk=8,
                 progress=lambda n, b: calls.append((n, b)))
    assert [n for n, _ in calls] == [8, 16, 20]
    assert all(b > 0 for _, b in calls) and calls[-1][1] >= calls[0][1]


def test_abort_and_caller_failure_leave_no_file_at_the_final_path(tmp_path):
    w = VideoWriter(tmp_path / "a.mp4", 16)
    w.write(smooth_clip(n=4))
    w.abort()
    assert not (tmp_path / "a.mp4").exists() and not w.partial_path.exists()

    encoded = threading.Event()
    with pytest.raises(KeyError):
        with VideoWriter(tmp_path / "b.mp4", 16, progress=lambda n, b: encoded.set()) as w:
            w.write(smooth_clip(n=4))
            assert encoded.wait(30)
            raise KeyError("decode failed")
    assert not (tmp_path / "b.mp4").exists()
    # what was completed is kept, under a name that says it is partial
    assert w.partial_path.exists() and ".partial" in w.partial_path.name


def test_no_frames_is_an_error_not_an_empty_file(tmp_path):
    w = VideoWriter(tmp_path / "x.mp4", 16)
    with pytest.raises(ValueError, match="no frames were written"):
        w.close()
    assert not (tmp_path / "x.mp4").exists()


CRASH_CHILD = textwrap.dedent("""
    import sys, time, numpy as np
    from vidmem import VideoWriter
    out, chunks, h, w = sys.argv[1], int(sys.argv[2]), 48, 64
    done = []
    writer = VideoWriter(out, 16, progress=lambda n, b: done.append(n))
    for k in range(100):
        frames = np.full((8, h, w, 3), (k * 23) % 256, np.uint8)
        frames[:, :, : (k % w)] = 255
        writer.write(frames)
        while len(done) <= k:  # wait until this chunk is completed (encoded and on disk)
            time.sleep(0.01)
        if k + 1 == chunks:
            print("ready", flush=True)
            time.sleep(60)  # killed here, mid-clip
""")


def test_sigkill_mid_clip_leaves_a_playable_partial_file(tmp_path):
    out = tmp_path / "clip.mp4"
    proc = subprocess.Popen([sys.executable, "-c", CRASH_CHILD, str(out), "3"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()  # the final name never exists for an incomplete clip
    partial = out.with_name(out.name + ".partial.ts")
    frames, _ = read_video(partial)
    assert len(frames) >= 3 * 8  # every completed chunk decodes
    assert (frames[16].astype(int) - 46).__abs__().mean() < 40  # chunk 2's content, not garbage


def _top_level_atoms(path) -> list[str]:
    import struct

    names = []
    with open(path, "rb") as f:
        while header := f.read(8):
            size, name = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0] - 8
            f.seek(size - 8, 1)
            names.append(name.decode())
    return names


def test_one_encoder_while_busy_and_a_keyframe_at_every_chunk(tmp_path, monkeypatch):
    """While chunks keep coming the encoder is never restarted; each chunk starts with a
    keyframe, so the stream can be cut cleanly at any completed chunk."""
    created = []
    original = VideoWriter._new_encoder

    def counting(self):
        created.append(1)
        return original(self)

    monkeypatch.setattr(VideoWriter, "_new_encoder", counting)
    frames = smooth_clip(n=40)
    write_chunks(tmp_path / "x.mp4", frames, chunk=8, flush_after=30)
    assert len(created) == 1
    with av.open(str(tmp_path / "x.mp4")) as c:
        stream = c.streams.video[0]
        keys = sorted(round(p.pts * stream.time_base * 16) for p in c.demux(stream)
                      if p.pts is not None and p.is_keyframe)
    assert set(range(0, 40, 8)) <= set(keys)


def test_an_idle_writer_completes_its_chunks_without_more_input(tmp_path):
    """The encoder holds frames back (lookahead); when no input comes for ``flush_after``
    seconds it drains, so a chunk is on disk without waiting for the next one or for close."""
    calls = []
    with VideoWriter(tmp_path / "x.mp4", 16, flush_after=0.1,
                     progress=lambda n, b: calls.append(n)) as w:
        w.write(smooth_clip(n=6))
        deadline = time.monotonic() + 30
        while w.frames_written < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert w.frames_written == 6 and calls == [6]
        assert len(read_video(w.partial_path)[0]) == 6
        w.write(smooth_clip(n=4, seed=1))  # a fresh encoder continues the same stream
    got, _ = read_video(tmp_path / "x.mp4")
    assert len(got) == 10 and calls == [6, 10]


@pytest.mark.parametrize("lossless", [False, True])
def test_drained_and_reopened_encoders_keep_every_frame_time(tmp_path, lossless):
    """Idle pauses between chunks (a slow decode) drain the encoder and open a new one, whose
    B-frame decode timestamps start below the previous encoder's last ones: the final MP4 still
    has one frame every 1/fps, in order (regression: a loaded machine gave 144/7 fps for 16)."""
    frames = smooth_clip(n=9)  # chunks of 4, 4 and 1 frames, as `vidmem render --chunk-frames 4`
    with VideoWriter(tmp_path / "x.mp4", 16, flush_after=0.02, lossless=lossless) as w:
        for i in range(0, len(frames), 4):
            w.write(frames[i:i + 4])
            deadline = time.monotonic() + 30
            while w.frames_written < min(i + 4, len(frames)) and time.monotonic() < deadline:
                time.sleep(0.01)  # idle: the encoder drains; the next chunk opens a new one
    got, rate = read_video(tmp_path / "x.mp4")
    assert rate == 16 and len(got) == len(frames)
    with av.open(str(tmp_path / "x.mp4")) as c:
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.pts is not None]
        pts = sorted(round(p.pts * stream.time_base * 16) for p in packets)
        assert pts == list(range(len(frames)))
        assert {round(p.duration * stream.time_base * 16) for p in packets} == {1}
        dts = [p.dts for p in packets]
        assert dts == sorted(dts) and len(set(dts)) == len(dts)
    if lossless:
        assert np.array_equal(got, frames)
    else:
        assert psnr(torch.from_numpy(got), torch.from_numpy(frames), 255.0) > 40


def test_final_file_has_its_index_first_even_when_the_reservation_is_too_small(tmp_path,
                                                                               monkeypatch,
                                                                               caplog):
    from vidmem.io import writer as writer_module

    frames = smooth_clip(n=30)
    write_chunks(tmp_path / "reserved.mp4", frames)
    atoms = _top_level_atoms(tmp_path / "reserved.mp4")
    assert atoms.index("moov") < atoms.index("mdat")
    monkeypatch.setattr(writer_module, "MOOV_BYTES_FIXED", 16)
    monkeypatch.setattr(writer_module, "MOOV_BYTES_PER_FRAME", 0)
    with caplog.at_level("WARNING", logger="vidmem"):
        write_chunks(tmp_path / "fallback.mp4", frames)  # the muxer refuses; +faststart instead
    assert "larger than reserved" in caplog.text
    atoms = _top_level_atoms(tmp_path / "fallback.mp4")
    assert atoms.index("moov") < atoms.index("mdat")
    a, _ = read_video(tmp_path / "reserved.mp4")
    b, _ = read_video(tmp_path / "fallback.mp4")
    assert np.array_equal(a, b) and len(a) == 30


def test_flush_after_must_be_non_negative(tmp_path):
    with pytest.raises(ValueError, match="flush_after"):
        VideoWriter(tmp_path / "x.mp4", 16, flush_after=-1)


def test_two_processes_never_write_one_file(tmp_path):
    """A writer holds its output's lock: a writer of the same path in another process fails at
    once, naming the holder; once the holder dies (SIGKILL here), the path can be written."""
    from vidmem import OutputInUse

    out = tmp_path / "shared.mp4"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, numpy as np\n"
         "from vidmem.io.writer import VideoWriter\n"
         f"w = VideoWriter({str(out)!r}, fps=8)\n"
         "w.write(np.zeros((2, 16, 16, 3), np.uint8))\n"
         "print('ready', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(OutputInUse, match=f"pid {holder.pid}"):
            VideoWriter(out, fps=8)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with VideoWriter(out, fps=8) as w:
        w.write(np.zeros((3, 16, 16, 3), np.uint8))
    assert out.exists() and not (tmp_path / "shared.mp4.lock").exists()


def test_float_frames_convert_exactly_frame_by_frame():
    """The frame-by-frame conversion of float frames equals rint(clip(x, 0, 1) * 255) in every
    float dtype (including half-way values and out-of-range ones), and a NaN or inf anywhere is
    refused."""
    from vidmem.io.frames import to_uint8_frames

    rng = np.random.default_rng(0)
    for dtype in (np.float16, np.float32, np.float64):
        x = (rng.random((3, 8, 10, 3)) * 1.4 - 0.2).astype(dtype)
        x[0, 0, :3, 0] = np.array([0.5, 1.5, 254.5]) / 255  # rounding ties
        x[1, 0, 0, 0] = 1e30 if dtype != np.float16 else 6e4  # overflows to inf when scaled
        expected = np.rint(np.clip(x.astype(np.float64) if dtype == np.float64 else x, 0.0, 1.0)
                           * 255.0).astype(np.uint8)
        assert np.array_equal(to_uint8_frames(x), expected), dtype
    for bad in (np.nan, np.inf, -np.inf):
        x = np.zeros((2, 4, 4, 3), np.float32)
        x[1, 2, 3, 1] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            to_uint8_frames(x)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_a_reused_caller_buffer_does_not_change_queued_frames(tmp_path, monkeypatch, as_tensor):
    """write() queues the writer's own copy: a caller that refills one buffer for every chunk
    (a staging buffer) gets every chunk encoded as it was at write(), even while the encoder
    is held back and chunks wait in the queue."""
    frames = np.random.default_rng(1).integers(0, 256, (12, 32, 48, 3), dtype=np.uint8)
    gate = threading.Event()
    original = VideoWriter._encode_chunk

    def held_back(self, chunk):
        gate.wait(10)
        return original(self, chunk)

    monkeypatch.setattr(VideoWriter, "_encode_chunk", held_back)
    buffer = np.empty((4, 32, 48, 3), dtype=np.uint8)
    with VideoWriter(tmp_path / "x.mp4", 16, lossless=True, queue_size=3) as w:
        for i in range(0, 12, 4):
            buffer[:] = frames[i:i + 4]
            w.write(torch.from_numpy(buffer) if as_tensor else buffer)
        buffer[:] = 0  # the caller moves on while every chunk is still queued
        gate.set()
    got, _ = read_video(tmp_path / "x.mp4")
    assert np.array_equal(got, frames)
