"""The three pixel backends behind `Slide`. Each exposes the same four things: level dimensions,
level downsamples, `read(level, x, y, w, h)` of an in-bounds rectangle in that level's pixels as
H×W×3 uint8 RGB, and `close()`. Geometry, resampling, padding and µm/px live in slide.py."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import openslide
import tifffile
import zarr
from PIL import Image

from .errors import SlideError


def flatten_on_white(pixels: np.ndarray) -> np.ndarray:
    """RGB uint8 from grey, RGB or RGBA; transparent pixels (outside the scan) become white glass."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[2] in (1, 2):  # grey, grey + alpha
        pixels = np.concatenate([np.repeat(pixels[..., :1], 3, axis=2), pixels[..., 1:]], axis=2)
    if pixels.shape[2] == 4:
        alpha = pixels[..., 3:4]
        if alpha.min() == 255:  # inside the scan (nearly always): no blending to pay for
            return np.ascontiguousarray(pixels[..., :3])
        a = alpha.astype(np.uint16)
        return ((pixels[..., :3].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(pixels[..., :3])


class OpenSlideReader:
    """Every vendor format OpenSlide knows (SVS, NDPI, MRXS, SCN, generic tiled TIFF, DICOM, ...)."""

    name = "openslide"

    def __init__(self, path: Path):
        try:
            self._slide = openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, OSError) as exc:
            raise SlideError(f"OpenSlide cannot open it ({exc})", path) from None
        self.level_dimensions = tuple(tuple(d) for d in self._slide.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        self.properties = dict(self._slide.properties)

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        # read_region wants the location in level-0 pixels but the size in pixels of `level`.
        ds = self.level_downsamples[level]
        region = self._slide.read_region((round(x * ds), round(y * ds)), level, (w, h))
        if region.getchannel("A").getextrema()[0] == 255:  # inside the scan: PIL drops alpha in a third of numpy's time
            return np.asarray(region.convert("RGB"))
        return flatten_on_white(np.asarray(region))

    def close(self) -> None:
        self._slide.close()


class TiffReader:
    """OME-TIFF and plain tiled/pyramidal TIFF through tifffile's zarr view, so only the tiles
    under a request are decoded."""

    name = "tifffile"

    def __init__(self, path: Path):
        try:
            with _quiet("tifffile"):  # it logs each broken tag; the one error below says what matters
                self._tif = tifffile.TiffFile(path)
                series = self._tif.series[0]
                if not _complete(series, self._tif.filehandle.size):
                    self._tif.close()
                    raise SlideError("truncated or corrupt TIFF: its image data is missing or runs past the end of the file", path)
                self._levels = [zarr.open_array(series.aszarr(level=i), mode="r") for i in range(len(series.levels))]
        except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError) as exc:
            raise SlideError(f"not a readable TIFF ({exc})", path) from None
        axes = series.axes
        if "Y" not in axes or "X" not in axes or series.dtype != np.uint8:
            self._tif.close()
            raise SlideError(f"unsupported TIFF layout (axes {axes}, {series.dtype}); need 8-bit Y×X(×RGB)", path)
        self._axes = axes
        self.level_dimensions = tuple((a.shape[axes.index("X")], a.shape[axes.index("Y")]) for a in self._levels)
        w0, h0 = self.level_dimensions[0]
        self.level_downsamples = tuple((w0 / w + h0 / h) / 2 for w, h in self.level_dimensions)

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        index = tuple(slice(y, y + h) if a == "Y" else slice(x, x + w) if a == "X" else slice(None) if a in "SC" else 0 for a in self._axes)
        pixels = np.asarray(self._levels[level][index])
        kept = [a for a in self._axes if a in "YXSC"]
        if "C" in kept:  # planar channels first: move them last
            pixels = np.moveaxis(pixels, kept.index("C"), -1)
        return flatten_on_white(pixels)

    def close(self) -> None:
        self._tif.close()


def _complete(series, file_size: int) -> bool:
    """Does every page of every level have its tiles (or strips), all inside the file? A copy cut
    short still parses, but its pixels are missing."""
    for level in series.levels:
        for page in level.pages:
            offsets, counts = (page.dataoffsets, page.databytecounts) if page is not None else ((), ())
            if not offsets or len(offsets) != len(counts) or max(o + c for o, c in zip(offsets, counts)) > file_size:
                return False
    return True


@contextmanager
def _quiet(logger: str):
    """Silence a library's logger below CRITICAL for the duration."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


class ImageReader:
    """Ordinary single-field images (PNG/JPEG): one level, decoded once; they are small."""

    name = "image"

    def __init__(self, path: Path):
        try:
            with Image.open(path) as image:
                image.load()
                self._pixels = flatten_on_white(np.asarray(image.convert("RGBA")))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise SlideError(f"not a readable image ({exc})", path) from None
        self.level_dimensions = ((self._pixels.shape[1], self._pixels.shape[0]),)
        self.level_downsamples = (1.0,)

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self._pixels[y : y + h, x : x + w]

    def close(self) -> None:
        self._pixels = None


READERS = {r.name: r for r in (OpenSlideReader, TiffReader, ImageReader)}
