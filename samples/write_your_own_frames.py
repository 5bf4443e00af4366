"""Stream frames from your own generator into an MP4: memory stays at one chunk however long
the clip is, and a crash never leaves a truncated file under the final name.

    python samples/write_your_own_frames.py [OUT.mp4]
"""

import sys

import numpy as np

import vidmem

out = sys.argv[1] if len(sys.argv) > 1 else "own_frames.mp4"
height, width, fps = 120, 160, 24


def moving_gradient(frames: int, chunk: int = 12):
    """Yield (T, H, W, 3) uint8 chunks of a gradient that scrolls one pixel per frame."""
    y, x = np.mgrid[0:height, 0:width]
    for start in range(0, frames, chunk):
        t = np.arange(start, min(start + chunk, frames))[:, None, None]
        r = ((x[None] + t) % width * 255 // width).astype(np.uint8)
        g = np.broadcast_to((y * 255 // height).astype(np.uint8), r.shape)
        b = np.full_like(r, 128)
        yield np.stack([r, g, b], axis=-1)


with vidmem.VideoWriter(out, fps, crf=20) as writer:  # float chunks in [0, 1] work too
    for chunk in moving_gradient(60):
        writer.write(chunk)
print(f"wrote {out}: {writer.frames_written} frames, peak RSS "
      f"{vidmem.utils.format_bytes(vidmem.utils.peak_rss_bytes())}")
