"""Tiling as a pure function: a frozen grid of tiles (core + halo read box) over the AOI.

Exactly-once detection comes from ownership, not de-duplication: a detection belongs to the tile
whose core holds its centre. Cores partition the slide, so every centre has one owner, and
the halo (checked against the largest cell) lets the owner see its cells whole."""

from __future__ import annotations

import math

from .config import TilingConfig
from .records import AoiMask, Box, Tile, TileGrid


def make_grid(width: int, height: int, mpp: float, cfg: TilingConfig, aoi: AoiMask | None = None, align: int = 1) -> TileGrid:
    """Tiles of `cfg.tile_um` core over a `width`×`height` level-0 slide; tiles whose core misses the
    AOI are dropped (their cells are outside it by ownership). Core and halo are multiples of
    `align` level-0 px, so every tile samples the same pixel grid and the network's strides fall
    on the same pixels in every tile: tiled and untiled then see identical inputs."""
    tile = max(1, int(round(cfg.tile_um / mpp / align))) * align
    halo = int(math.ceil(cfg.halo_um / mpp / align)) * align
    block = min(tile, max(1, int(round(cfg.qc_block_um / mpp / align))) * align)
    tiles = []
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            core = Box(x0, y0, x0 + tile, y0 + tile).clipped(width, height)
            if aoi is not None and not aoi.covers(core):
                continue
            read = Box(core.x0 - halo, core.y0 - halo, core.x1 + halo, core.y1 + halo)
            tiles.append(Tile(len(tiles), core, read, _blocks(core, block, aoi)))
    return TileGrid(tuple(tiles), tile, halo)


def _blocks(core: Box, block: int, aoi: AoiMask | None) -> tuple[Box, ...]:
    """The core cut into `block`-sized squares (smaller at the slide's edge), those the AOI covers:
    QC figures do not change with the tile size."""
    squares = (
        Box(x, y, min(x + block, core.x1), min(y + block, core.y1))
        for y in range(core.y0, core.y1, block)
        for x in range(core.x0, core.x1, block)
    )
    return tuple(b for b in squares if aoi is None or aoi.covers(b))
