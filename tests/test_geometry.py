"""Pure decode geometry: frame-count formulas, window alignment, tile coverage."""

import pytest
import torch

from vidmem.decode.geometry import Span, TimeMap, overlapping_tiles, plan_tiles, plan_windows


@pytest.mark.parametrize("factor", [4, 6, 8])
def test_causal_time_map_matches_formula(factor):
    tm = TimeMap(factor, causal_first_frame=True)
    for t in range(1, 12):
        assert tm.pixel_frames(t) == factor * (t - 1) + 1
        # the latent frames that cover tm.pixel_frames(t) frames are exactly t
        assert tm.latent_frames_for(tm.pixel_frames(t)) == t
    # frame starts are contiguous: latent i ends where latent i+1 starts
    for i in range(1, 10):
        assert tm.pixel_start(i + 1) - tm.pixel_start(i) == factor
    assert tm.pixel_start(1) == 1


def test_plain_time_map():
    tm = TimeMap(1, causal_first_frame=False)
    assert tm.pixel_frames(7) == 7 and tm.pixel_start(3) == 3


def test_cache_windows_are_disjoint_and_cover_the_clip():
    tm = TimeMap(4, True)
    windows = plan_windows(9, tm, chunk_latents=2, context_latents=0, carries_cache=True)
    assert [w.latents for w in windows] == [Span(0, 2), Span(2, 4), Span(4, 6), Span(6, 8),
                                            Span(8, 9)]
    # each window's frames start where the previous one stopped, and nothing is discarded
    assert windows[0].offset == 0
    for prev, cur in zip(windows, windows[1:]):
        assert cur.offset == prev.stop == cur.keep_from
    assert windows[-1].stop == tm.pixel_frames(9) == 33


def test_fresh_causal_window_aligns_first_frame_with_last_subframe():
    tm = TimeMap(4, True)
    windows = plan_windows(9, tm, chunk_latents=3, context_latents=2)
    w = windows[1]  # new latents 3..5, context from latent 1
    assert w.latents == Span(1, 6)
    # a fresh decode starting at latent 1 yields 1 + 4*4 = 17 frames ending where the full one does
    assert w.offset + tm.pixel_frames(w.latents.size) == w.stop == tm.pixel_frames(6)
    assert w.keep_from == tm.pixel_start(3)


@pytest.mark.parametrize("total, tile, overlap", [(50, 16, 4), (30, 16, 4), (52, 16, 4),
                                                   (17, 8, 2), (100, 33, 0), (9, 8, 7),
                                                   (12, 10, 8), (16, 10, 2)])
def test_overlapping_tiles_are_the_requested_size_and_cover_evenly(total, tile, overlap):
    spans = overlapping_tiles(total, tile, overlap)
    assert spans[0].start == 0 and spans[-1].stop == total
    assert {s.size for s in spans} == {tile}  # exactly the size asked for
    # fewest tiles: one fewer could not cover the extent with that overlap
    assert (len(spans) - 1) * (tile - overlap) + overlap < total
    covered = set()
    for s in spans:
        covered.update(range(s.start, s.stop))
    assert covered == set(range(total))
    seams = [a.stop - b.start for a, b in zip(spans, spans[1:])]
    assert min(seams) >= overlap  # at least the asked-for overlap
    assert max(seams) - min(seams) <= 1  # the remainder spread evenly over the seams


def test_tile_overlap_must_be_smaller_than_tile():
    with pytest.raises(ValueError, match="smaller than the tile"):
        overlapping_tiles(50, 8, 8)


def test_plan_tiles_maps_to_pixels_and_marks_neighbours():
    tiles = plan_tiles(12, 20, 8, tile_latent=8, overlap_latent=2)
    assert len(tiles) == 2 * 3
    first, last = tiles[0], tiles[-1]
    # rows: 2 tiles of 8 overlapping by 4 (the remainder goes into the overlap); cols: 3 of 8
    assert first.rows == Span(0, 8) and first.cols == Span(0, 8)
    assert first.py == Span(0, 64) and first.px == Span(0, 64)
    assert first.neighbours == (False, True, False, True)
    assert first.overlaps == (0, 4, 0, 2)
    assert last.px.stop == 160 and last.py.stop == 96
    assert last.neighbours == (True, False, True, False)


def test_plan_summary_prints_the_real_tiles_and_chunks():
    """An 80 px tile on a x8 VAE decodes 10x10-latent tiles (not shrunk to fit), the frame's
    remainder in the overlaps; the summary says so, with the real chunk count and sizes."""
    import torch

    from vidmem import plan_decode
    from vidmem.tiny import tiny_pipeline

    vae = tiny_pipeline("wan").vae
    z = torch.zeros(1, 16, 5, 18, 26)  # 17 frames of 144x208
    plan = plan_decode(vae, z, chunk_frames=8, tile_size=80, tile_overlap=16)
    assert {(t.rows.size, t.cols.size) for t in plan.tiles} == {(10, 10)}
    assert all(o >= 2 for t in plan.tiles for o in t.overlaps if o)
    text = plan.summary()
    assert f"{len(plan.tiles)} tiles of 10 latent px (80x80 px, 2x3)" in text
    assert f"{len(plan.windows)} chunks of 2 latent frames" in text
    assert text.endswith("frames per chunk 5, 8, 4")  # 17 frames: 1 + 4, then 8, then 4


def test_blend_shape_linear_only_where_a_tile_is_all_overlap():
    from vidmem.decode.blend import blend_shape, tile_mask

    # 2-latent tiles overlapping by 1 on a 4-latent frame: the middle tiles are all overlap
    all_overlap = plan_tiles(4, 4, 32, 2, 1)
    assert blend_shape(all_overlap) == "linear"
    # tiles with an interior keep the cosine ramp (3-latent tiles on 4 latents: overlap 2)
    assert blend_shape(plan_tiles(4, 4, 32, 3, 1)) == "cosine"
    assert blend_shape(plan_tiles(6, 8, 8, 6, 2)) == "cosine"
    # evenly spread 4-latent tiles on 8 latents: the middle one is overlapped by 2 on each side
    assert blend_shape(plan_tiles(6, 8, 8, 4, 1)) == "linear"
    assert blend_shape(plan_tiles(6, 8, 8, None, 0)) == "cosine"
    # either shape: the two ramps of every seam sum to 1 over the covered frame
    for tiles in (all_overlap, plan_tiles(6, 8, 8, 4, 1)):
        shape = blend_shape(tiles)
        total = torch.zeros(tiles[-1].py.stop, tiles[-1].px.stop)
        for t in tiles:
            total[t.py.as_slice(), t.px.as_slice()] += tile_mask(t, shape=shape)
        assert torch.allclose(total, torch.ones_like(total), atol=1e-6), shape
