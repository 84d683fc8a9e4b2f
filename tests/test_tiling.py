import numpy as np
import pytest

from wsi_screen.config import TilingConfig
from wsi_screen.records import AoiMask
from wsi_screen.tiling import make_grid


@pytest.mark.parametrize("width, height, tile_um", [(1000, 700, 25.6), (1234, 987, 40.0), (50, 50, 25.6)])
def test_cores_partition_the_slide_exactly_once(width, height, tile_um):
    cfg = TilingConfig(tile_um=tile_um, halo_um=5.0, max_cell_um=3.0, network_margin_um=1.0)
    grid = make_grid(width, height, 0.1, cfg)
    cover = np.zeros((height, width), np.int32)
    for t in grid.tiles:
        cover[t.core.y0 : t.core.y1, t.core.x0 : t.core.x1] += 1
        assert (t.read.x0, t.read.y0) == (t.core.x0 - grid.halo_px, t.core.y0 - grid.halo_px)
        assert (t.read.x1, t.read.y1) == (t.core.x1 + grid.halo_px, t.core.y1 + grid.halo_px)
    assert (cover == 1).all()
    assert grid.halo_px == 50 and [t.index for t in grid.tiles] == list(range(len(grid.tiles)))


def test_tiles_outside_the_aoi_are_dropped():
    mask = np.zeros((10, 10), bool)
    mask[2:4, 5:8] = True  # level-0 rows 200..400, cols 500..800 at downsample 100
    aoi = AoiMask(mask, downsample=100.0)
    grid = make_grid(1000, 1000, 0.1, TilingConfig(tile_um=25.6, halo_um=5.0, max_cell_um=3.0, network_margin_um=1.0), aoi)
    full = make_grid(1000, 1000, 0.1, TilingConfig(tile_um=25.6, halo_um=5.0, max_cell_um=3.0, network_margin_um=1.0))
    assert 0 < len(grid.tiles) < len(full.tiles)
    for t in full.tiles:
        inside = t.core.x1 > 500 and t.core.x0 < 800 and t.core.y1 > 200 and t.core.y0 < 400
        assert inside == any(g.core == t.core for g in grid.tiles)


def test_halo_smaller_than_the_largest_cell_is_refused():
    from wsi_screen.errors import ConfigError

    with pytest.raises(ConfigError, match="halo_um"):
        TilingConfig(halo_um=20.0, max_cell_um=30.0)


def test_alignment_puts_every_tile_on_the_same_pixel_grid():
    cfg = TilingConfig(tile_um=50.0, halo_um=9.0, max_cell_um=3.0, network_margin_um=1.0)
    grid = make_grid(2000, 1500, 0.1, cfg, align=80)
    assert grid.tile_px == 480 and grid.halo_px == 160
    assert all(t.core.x0 % 80 == 0 and t.read.x0 % 80 == 0 and t.read.y0 % 80 == 0 for t in grid.tiles)


def test_qc_blocks_do_not_change_with_the_tile_size():
    """QC is a median over fixed blocks: tiles four times the block's area measure QC on exactly
    the squares that block-sized tiles would, inside the AOI only."""
    mask = np.zeros((12, 12), bool)
    mask[2:9, 3:11] = True
    aoi = AoiMask(mask, downsample=100.0)
    small = TilingConfig(tile_um=25.6, qc_block_um=25.6, halo_um=5.0, max_cell_um=3.0, network_margin_um=1.0)
    big = TilingConfig(tile_um=51.2, qc_block_um=25.6, halo_um=5.0, max_cell_um=3.0, network_margin_um=1.0)
    blocks_small = [b for t in make_grid(1150, 1100, 0.1, small, aoi).tiles for b in t.qc_blocks]
    blocks_big = [b for t in make_grid(1150, 1100, 0.1, big, aoi).tiles for b in t.qc_blocks]
    assert len(blocks_big) > 10 and sorted(blocks_big, key=lambda b: (b.y0, b.x0)) == sorted(blocks_small, key=lambda b: (b.y0, b.x0))
    assert all(aoi.covers(b) for b in blocks_big)
