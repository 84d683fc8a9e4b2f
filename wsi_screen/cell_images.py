"""Labelled cell-image tables and the torch Dataset over them.

Every table row records the image's µm/px (`mpp`) so that each image is resampled to the same
physical field as the slide pipeline's patches (29 µm): the shared crops are 0.102 µm/px (~37 µm wide,
so only their centre is used), the Matek/LMU images are 400 px for 29 µm (used whole); a plain
folder tree has `mpp` NaN, meaning "the image spans the model's field"."""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from .classes import CLASS_CODES
from .errors import DatasetError
from .slide_colours import move_images

log = logging.getLogger(__name__)

# µm/px of the PBC and DeepAPL CellaVision crops, one value for both: red cells segmented in each
# source's crops measure the same (median 72.9 vs 73.1 px, DeepAPL/PBC 1.004 [0.98, 1.03] by
# patient), and a 7.5 µm red cell over their segmented diameter gives 0.102-0.103 (TXL-PBC's PBC
# fields, the same images, agree; their boxes are ~9 % looser than the cells, whence an earlier 0.09).
# `pipelines/measure_crop_scale.py` reproduces it.
CROP_MPP = 0.102
LMU_MPP = 29.0 / 400  # Matek et al. 2019: 400×400 px ≈ 29 µm
CELL_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
COLUMNS = ["file", "label", "source", "patient", "mpp"]
KNOWN_CODES = CLASS_CODES + ("PLT", "NLK")  # platelets and other non-leukocytes: the reject output


def read_manifest(path: str | Path) -> pd.DataFrame:
    """The shared cells: manifest.csv with file, class, source, source_label, patient."""
    path = Path(path)
    try:
        m = pd.read_csv(path, dtype={"patient": str})
    except FileNotFoundError:
        raise DatasetError("manifest not found", path) from None
    missing = {"file", "class", "source", "patient"} - set(m.columns)
    if missing:
        raise DatasetError(f"manifest lacks column(s) {', '.join(sorted(missing))}", path)
    table = pd.DataFrame(
        {
            "file": [str(path.parent / f) for f in m["file"]],
            "label": m["class"],
            "source": m["source"],
            "patient": m["patient"].fillna(""),
            "mpp": CROP_MPP,
        }
    )
    return _checked(table, path)


def read_lmu(root: str | Path, label: str = "original") -> pd.DataFrame:
    """AML-Cytomorphology_LMU as published: CLASS/CLASS_NNNN.tiff folders plus annotations.dat
    (`file original reann1 reann2`). Lines whose image is absent are dropped with a warning."""
    root = Path(root)
    ann = read_annotations(root / "annotations.dat")
    exists = np.array([(root / f).is_file() for f in ann["file"]])
    if not exists.all():
        log.warning("%s: %d of %d annotated images are absent; using the %d present", root, (~exists).sum(), len(ann), exists.sum())
    ann = ann[exists]
    table = pd.DataFrame(
        {"file": [str(root / f) for f in ann["file"]], "label": ann[label].values, "source": "lmu", "patient": "", "mpp": LMU_MPP}
    )
    return _checked(table, root)


def read_annotations(path: str | Path) -> pd.DataFrame:
    """annotations.dat → file, original, reann1, reann2 (NaN where not re-annotated; 'UNC' kept)."""
    path = Path(path)
    try:
        ann = pd.read_csv(path, sep=r"\s+", header=None, names=["file", "original", "reann1", "reann2"], dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DatasetError("annotations file not found", path) from None
    except pd.errors.ParserError as exc:
        raise DatasetError(f"not an annotations.dat ({exc})", path) from None
    if ann.empty or ann["original"].eq("").any():
        raise DatasetError("expected 4 whitespace-separated columns per line: file original reann1 reann2", path)
    return ann.replace({"reann1": {"nan": np.nan, "": np.nan}, "reann2": {"nan": np.nan, "": np.nan}})


def read_folder_tree(root: str | Path, mpp: float | None = None) -> pd.DataFrame:
    """Any CLASS/…/image tree whose top-level folder names are class codes."""
    root = Path(root)
    rows = [
        (str(f), d.name)
        for d in sorted(root.iterdir())
        if d.is_dir()
        for f in sorted(d.rglob("*"))
        if f.suffix.lower() in CELL_IMAGE_SUFFIXES
    ]
    if not rows:
        raise DatasetError("no images in class sub-folders", root)
    files, labels = zip(*rows)
    table = pd.DataFrame({"file": files, "label": labels, "source": root.name, "patient": "", "mpp": np.nan if mpp is None else mpp})
    return _checked(table, root)


def load_table(path: str | Path) -> pd.DataFrame:
    """Recognise the layout: a manifest.csv (or a folder holding one), an LMU tree with
    annotations.dat, or a plain folder-per-class tree."""
    path = Path(path)
    if path.is_file() and path.suffix == ".csv":
        return read_manifest(path)
    if not path.is_dir():
        raise DatasetError("dataset not found", path)
    if (path / "manifest.csv").is_file():
        return read_manifest(path / "manifest.csv")
    if (path / "annotations.dat").is_file():
        return read_lmu(path)
    return read_folder_tree(path)


def _checked(table: pd.DataFrame, where: Path) -> pd.DataFrame:
    unknown = sorted(set(table["label"]) - set(KNOWN_CODES))
    if unknown:
        raise DatasetError(f"unknown class code(s) {', '.join(map(str, unknown))}; expected {' '.join(KNOWN_CODES)}", where)
    return table.reset_index(drop=True)


@contextmanager
def _opened(path: str | Path) -> Iterator[Image.Image]:
    try:
        with Image.open(path) as im:
            yield im
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"cannot read image ({exc.__class__.__name__}: {exc})", path) from None


def read_image(path: str | Path) -> np.ndarray:
    """The whole image as H×W×3 uint8 RGB (truncated files decoded leniently, as for training)."""
    with _opened(path) as im:
        return _decoded(im, path)


def _decoded(im: Image.Image, path: str | Path) -> np.ndarray:
    """Truncated files (a few in PBC/DeepAPL) are decoded leniently, with a warning naming the file."""
    try:
        im.load()
    except OSError:
        log.warning("%s: truncated image, decoded leniently (the missing tail is filled by the decoder)", path)
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            im.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = False
    return np.asarray(im.convert("RGB"))


def load_canvas(path: str | Path, src_mpp: float, mpp: float, canvas_px: int, field_um: float) -> np.ndarray:
    """`to_canvas` of the image at `path`, a JPEG decoded by libjpeg at the smallest DCT scale (1/2,
    1/4, 1/8) that still holds `mpp`: a 360 px crop bound for a 128 px input costs a quarter of a
    full decode. Undecodable files raise DatasetError naming the file."""
    with _opened(path) as im:
        w, h = im.size
        src = src_mpp if math.isfinite(src_mpp) else field_um / min(w, h)
        if src < mpp:
            im.draft("RGB", (math.ceil(w * src / mpp), math.ceil(h * src / mpp)))
        image = _decoded(im, path)
    return to_canvas(image, src * w / image.shape[1], mpp, canvas_px, field_um)


def to_canvas(image: np.ndarray, src_mpp: float, mpp: float, canvas_px: int, field_um: float) -> np.ndarray:
    """Resample to `mpp` and centre-crop (or reflect-pad) to canvas_px². NaN `src_mpp`: the image's
    shorter side spans `field_um`."""
    h, w = image.shape[:2]
    if not math.isfinite(src_mpp):
        src_mpp = field_um / min(h, w)
    f = src_mpp / mpp
    nh, nw = max(1, round(h * f)), max(1, round(w * f))
    im = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR if f > 1 else Image.Resampling.BOX))
    pad_y, pad_x = max(0, canvas_px - nh), max(0, canvas_px - nw)
    if pad_y or pad_x:
        im = np.pad(im, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)), mode="reflect")
    y0, x0 = (im.shape[0] - canvas_px) // 2, (im.shape[1] - canvas_px) // 2
    return np.ascontiguousarray(im[y0 : y0 + canvas_px, x0 : x0 + canvas_px])


class CellDataset(torch.utils.data.Dataset):
    """(image tensor, class index) pairs. Images are decoded and resampled in the worker, or read
    from `cache` (N×canvas×canvas×3 uint8 from `build_cache`); `transform` maps a uint8 canvas to
    the network's float input (augmenting or not). `group_colours` (N×6 per row, and the 6 of the
    target) moves each row's colours with its group's (`slide_colours.move_images`)."""

    def __init__(
        self,
        table: pd.DataFrame,
        codes: tuple[str, ...],
        transform,
        mpp: float,
        canvas_px: int,
        field_um: float,
        cache=None,
        group_colours: tuple[np.ndarray, tuple[float, ...]] | None = None,
    ):
        self.files = table["file"].tolist()
        self.src_mpp = table["mpp"].astype(float).tolist()
        self.targets = np.array([codes.index(c) for c in table["label"]], dtype=np.int64)
        self.transform, self.mpp, self.canvas_px, self.field_um, self.cache = transform, mpp, canvas_px, field_um, cache
        self.group_colours = group_colours

    def __len__(self) -> int:
        return len(self.files)

    def canvas(self, i: int) -> np.ndarray:
        if self.cache is not None:
            canvas = self.cache[i]
        else:
            canvas = load_canvas(self.files[i], self.src_mpp[i], self.mpp, self.canvas_px, self.field_um)
        if self.group_colours is None:
            return canvas
        groups, target = self.group_colours
        return move_images(canvas, groups[i], target)

    def __getitem__(self, i: int):
        return self.transform(self.canvas(i)), int(self.targets[i])
