"""Slide: "give me this level-0 rectangle at this µm/px". It knows its µm/px (or refuses to open),
picks the finest-enough pyramid level itself, resamples, and pads regions outside the scan with
white so border cells are padded rather than dropped. Deliberately free of torch so the CLI can
validate inputs before heavy imports."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import openslide
import tifffile
from PIL import Image

from .errors import CannotReadSpacing, ResolutionTooCoarse, SlideError
from .readers import READERS
from .records import Box, SlideInfo

FIELD_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
OME_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.btf")
OPENSLIDE_SUFFIXES = (".svs", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm", ".czi")
CHUNK_PX = 4096  # largest level-pixel square decoded at once, bounds memory for thumbnails
_UM_PER_UNIT = {2: 25400.0, 3: 10000.0}  # TIFF ResolutionUnit inch, centimetre
_UM_PER_OME_UNIT = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


class Slide:
    """A µm-aware reader. Pickles as its `SlideInfo` only; the backend reopens lazily, so Dask
    tasks can carry a Slide (or just its path) and each worker opens its own handle."""

    def __init__(self, info: SlideInfo, reader=None):
        self.info = info
        self._reader = reader

    def __getstate__(self) -> dict:
        return {"info": self.info}

    def __setstate__(self, state: dict) -> None:
        self.info, self._reader = state["info"], None

    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return f"Slide({i.path.name!r}, {i.backend}, {i.width}x{i.height} px, {i.mpp:.4g} µm/px)"

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def read(self, box: Box, mpp: float) -> np.ndarray:
        """H×W×3 uint8 RGB of level-0 `box` resampled to `mpp` µm/px; outside the slide is white.
        A failing (e.g. corrupt) tile raises SlideError for this region only: the handle is
        dropped and reopened on the next call, since OpenSlide handles stay broken after errors."""
        if box.width <= 0 or box.height <= 0 or not mpp > 0:
            raise ValueError(f"need a non-empty box and mpp > 0, got {box} at {mpp}")
        scale = mpp / self.info.mpp  # level-0 px per output px
        out_size = (max(1, round(box.width / scale)), max(1, round(box.height / scale)))
        level = self.level_for(mpp)
        level_w, level_h = self.info.level_dimensions[level]
        sx, sy = self.info.width / level_w, self.info.height / level_h
        # integer block-mean pre-reduction for large reductions; PIL does the rest
        factor = max(1, int(scale / max(sx, sy)))
        x0, y0 = math.floor(box.x0 / sx), math.floor(box.y0 / sy)
        x1 = x0 + factor * math.ceil((math.ceil(box.x1 / sx) - x0) / factor)
        y1 = y0 + factor * math.ceil((math.ceil(box.y1 / sy) - y0) / factor)
        try:
            canvas = self._read_reduced(level, x0, y0, x1, y1, factor)
        except SlideError:
            raise
        except Exception as exc:  # decoder errors differ per backend and codec
            self.close()
            raise SlideError(f"cannot read {box} at level {level}: {exc.__class__.__name__}: {exc}", self.info.path) from exc
        source = ((box.x0 / sx - x0) / factor, (box.y0 / sy - y0) / factor, (box.x1 / sx - x0) / factor, (box.y1 / sy - y0) / factor)
        if source == (0, 0, *canvas.shape[1::-1]) and out_size == canvas.shape[1::-1]:
            return canvas
        return np.asarray(Image.fromarray(canvas).resize(out_size, Image.Resampling.BILINEAR, box=source))

    def thumbnail(self, mpp: float) -> np.ndarray:
        """The whole slide at `mpp` µm/px."""
        return self.read(Box(0, 0, self.info.width, self.info.height), mpp)

    def level_for(self, mpp: float) -> int:
        """The pyramid level `read(box, mpp)` decodes."""
        return self.best_level(mpp / self.info.mpp)

    def best_level(self, scale: float) -> int:
        """The coarsest level still at least as fine as `scale` level-0 px per output px."""
        fine_enough = [i for i, d in enumerate(self.info.level_downsamples) if d <= scale * (1 + 1e-3)]
        return max(fine_enough, key=lambda i: self.info.level_downsamples[i], default=0)

    @property
    def _backend(self):
        if self._reader is None:
            self._reader = READERS[self.info.backend](self.info.path)
        return self._reader

    def _read_reduced(self, level: int, x0: int, y0: int, x1: int, y1: int, factor: int) -> np.ndarray:
        """Level pixels [x0, x1) × [y0, y1), white outside the level, block-averaged by `factor`,
        decoded in chunks of at most CHUNK_PX² so a thumbnail never holds a whole level."""
        level_w, level_h = self.info.level_dimensions[level]
        out = np.full(((y1 - y0) // factor, (x1 - x0) // factor, 3), 255, np.uint8)
        step = factor * max(1, CHUNK_PX // factor)
        for cy in range(y0, y1, step):
            for cx in range(x0, x1, step):
                cx1, cy1 = min(cx + step, x1), min(cy + step, y1)
                ix0, iy0, ix1, iy1 = max(cx, 0), max(cy, 0), min(cx1, level_w), min(cy1, level_h)
                if ix0 >= ix1 or iy0 >= iy1:
                    continue
                chunk = np.full((cy1 - cy, cx1 - cx, 3), 255, np.uint8)
                chunk[iy0 - cy : iy1 - cy, ix0 - cx : ix1 - cx] = self._backend.read(level, ix0, iy0, ix1 - ix0, iy1 - iy0)
                if factor > 1:
                    h, w = chunk.shape[0] // factor, chunk.shape[1] // factor
                    chunk = np.rint(chunk.reshape(h, factor, w, factor, 3).mean(axis=(1, 3))).astype(np.uint8)
                oy, ox = (cy - y0) // factor, (cx - x0) // factor
                out[oy : oy + chunk.shape[0], ox : ox + chunk.shape[1]] = chunk
        return out


def open_slide(path: str | Path, mpp: float | None = None, max_mpp: float = 0.25, backend: str | None = None) -> Slide:
    """Open a slide, with `mpp` (µm/px, --mpp) overriding whatever the file says. Raises
    SlideError (missing, unreadable, unsupported), CannotReadSpacing, ResolutionTooCoarse.
    `backend` ("openslide", "tifffile", "image") forces a reader; by default it is chosen from
    the file's contents and suffix."""
    path = Path(path)
    if not path.exists():
        raise SlideError("file not found", path)
    if path.is_dir():
        raise SlideError("is a directory, not a slide file", path)
    if backend not in (None, *READERS):
        raise ValueError(f"backend must be one of {', '.join(READERS)}, got {backend!r}")
    reader = READERS[backend or _choose_backend(path)](path)
    try:
        spacing, source = _spacing(path, reader, mpp)
        if spacing > max_mpp * (1 + 1e-6):
            raise ResolutionTooCoarse(
                f"finest level is {spacing:.3g} µm/px ({source}), coarser than the {max_mpp:g} µm/px needed "
                "for leukocyte morphology (e.g. a 40x dry scan at 0.25+ µm/px); scan at 63x/100x oil",
                path,
            )
        dims = reader.level_dimensions
        info = SlideInfo(path, reader.name, dims[0][0], dims[0][1], spacing, source, dims, reader.level_downsamples)
    except BaseException:
        reader.close()
        raise
    return Slide(info, reader)


def check_slide(path: str | Path, mpp: float | None = None, max_mpp: float = 0.25) -> SlideInfo:
    """Fail fast before heavy imports: open, read the spacing and decode one small central region."""
    with open_slide(path, mpp, max_mpp) as slide:
        cx, cy = slide.info.width // 2, slide.info.height // 2
        slide.read(Box(cx - 32, cy - 32, cx + 32, cy + 32), slide.info.mpp)
        return slide.info


def _choose_backend(path: Path) -> str:
    name, suffix = path.name.lower(), path.suffix.lower()
    if suffix in FIELD_IMAGE_SUFFIXES:
        return "image"
    if name.endswith(OME_SUFFIXES):
        return "tifffile"
    try:
        if openslide.OpenSlide.detect_format(str(path)):
            return "openslide"
    except openslide.OpenSlideError:
        pass
    if suffix in TIFF_SUFFIXES:
        return "tifffile"
    if suffix in OPENSLIDE_SUFFIXES:
        raise SlideError(f"not a readable {suffix} slide (truncated, corrupt, or another file renamed)", path)
    supported = " ".join(FIELD_IMAGE_SUFFIXES + TIFF_SUFFIXES + OPENSLIDE_SUFFIXES)
    raise SlideError(f"unsupported file type {suffix or '(no suffix)'!r}; supported: {supported}", path)


def _spacing(path: Path, reader, override: float | None) -> tuple[float, str]:
    """µm/px of level 0: --mpp, else OpenSlide's mpp, else TIFF resolution tags, else OME-XML.
    A PNG/JPEG dpi is a print setting, not a scan resolution, so plain images need --mpp."""
    if override is not None:
        if not override > 0:
            raise SlideError(f"--mpp must be > 0, got {override}", path)
        return float(override), "override"
    if reader.name == "openslide":
        mpp = _mean_positive(reader.properties.get("openslide.mpp-x"), reader.properties.get("openslide.mpp-y"))
        if mpp:
            return mpp, "openslide"
    found = None if reader.name == "image" else _tiff_spacing(path)
    if found is None:
        raise CannotReadSpacing("no µm/px in the file (OpenSlide properties, TIFF resolution tags, OME-XML); pass --mpp", path)
    return found


def _tiff_spacing(path: Path) -> tuple[float, str] | None:
    try:
        with tifffile.TiffFile(path) as tif:
            tags, ome = tif.pages[0].tags, tif.ome_metadata
    except (tifffile.TiffFileError, ValueError, OSError, IndexError):
        return None
    unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2  # TIFF default: inch
    if unit in _UM_PER_UNIT and "XResolution" in tags:
        per_unit = [num / den for num, den in (tags[k].value for k in ("XResolution", "YResolution") if k in tags) if num and den]
        mpp = _mean_positive(*(_UM_PER_UNIT[unit] / r for r in per_unit))
        if mpp:
            return mpp, "tiff-resolution"
    if ome:
        return _ome_spacing(ome)
    return None


def _ome_spacing(xml: str) -> tuple[float, str] | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for pixels in root.iter():
        if pixels.tag.endswith("}Pixels") or pixels.tag == "Pixels":
            factor = _UM_PER_OME_UNIT.get(pixels.get("PhysicalSizeXUnit", "µm"))
            mpp = _mean_positive(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeY"))
            return (mpp * factor, "ome-xml") if mpp and factor else None
    return None


def _mean_positive(*values) -> float | None:
    """Mean of the values that parse as positive finite floats (x and y spacing), else None."""
    good = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f) and f > 0:
            good.append(f)
    return sum(good) / len(good) if good else None
