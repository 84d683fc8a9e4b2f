"""One config tree: frozen dataclasses whose defaults are the shipped values (mirrored in
configs/default.yaml), loaded from YAML with unknown keys, wrong types and out-of-range values
rejected at start-up, and hashed into every output. All lengths are µm, all areas µm²."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .classes import CLASS_CODES
from .errors import ConfigError


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class SlideConfig:
    max_mpp: float = 0.25  # coarser finest level (e.g. 40x dry) is refused for morphology

    def __post_init__(self):
        _check(0 < self.max_mpp <= 2.0, "slide.max_mpp must be in (0, 2]")


@dataclass(frozen=True)
class AoiConfig:
    mpp: float = 8.0  # resolution of the low-res AOI analysis
    window_um: float = 120.0  # neighbourhood over which cell coverage is measured
    min_coverage: float = 0.35  # below: feathered edge / empty glass
    max_coverage: float = 0.85  # above: thick end, cells overlap
    max_overlap: float = 0.12  # fraction of strongly stained (overlapping) pixels allowed
    overlap_layers: float = 1.25  # a pixel denser than this many red-cell layers is overlapping
    min_region_mm2: float = 0.01

    def __post_init__(self):
        _check(0.5 <= self.mpp <= 64, "aoi.mpp must be in [0.5, 64]")
        _check(self.window_um > 0, "aoi.window_um must be > 0")
        _check(0 <= self.min_coverage < self.max_coverage <= 1, "aoi coverage bounds must satisfy 0 <= min < max <= 1")
        _check(0 <= self.max_overlap <= 1, "aoi.max_overlap must be in [0, 1]")
        _check(1 <= self.overlap_layers <= 4, "aoi.overlap_layers must be in [1, 4]")
        _check(self.min_region_mm2 >= 0, "aoi.min_region_mm2 must be >= 0")


@dataclass(frozen=True)
class TilingConfig:
    tile_um: float = 1024.0  # core size: larger tiles read less halo (1.34× the core's area at 1024 µm, 1.72× at 512)
    qc_block_um: float = 512.0  # QC figures are medians over squares of this size, whatever the tile size
    max_cell_um: float = 30.0  # largest leukocyte diameter we expect
    halo_um: float = 80.0  # must exceed max_cell_um plus the network's margin
    network_margin_um: float = 48.0  # depth at which image-edge padding still changes the U-Net output (measured: 96 px)

    def __post_init__(self):
        _check(self.tile_um > 0, "tiling.tile_um must be > 0")
        _check(self.qc_block_um > 0, "tiling.qc_block_um must be > 0")
        _check(self.max_cell_um > 0, "tiling.max_cell_um must be > 0")
        _check(
            self.halo_um >= self.max_cell_um + self.network_margin_um,
            f"tiling.halo_um ({self.halo_um}) must be >= max_cell_um + network_margin_um "
            f"({self.max_cell_um + self.network_margin_um}) so every cell is seen whole by its owner tile",
        )


@dataclass(frozen=True)
class DetectConfig:
    method: str = "unet"  # "unet" (shipped weights) or "classical" (stain threshold baseline)
    model: str = "default"  # "default" (the shipped U-Net), a shipped detector's name, or a path to a weights file; its card sets the µm/px
    threshold: float = 0.5  # foreground probability
    min_area_um2: float = 40.0
    edge_min_area_um2: float = 4.0  # a cell cut by the image edge (the slide's border) shows less
    max_area_um2: float = 700.0
    min_score: float = 0.5
    min_nucleus_fraction: float = 0.15  # of a cell's pixels nucleus-stained (0: no check)
    min_core_um2: float = 12.0  # a smaller core seeds no cell of its own (a lobe is not a cell)
    device: str = "auto"
    classical_nucleus_threshold: float = 0.7  # baseline only: nucleus-stain cut-off

    def __post_init__(self):
        _check(self.method in ("unet", "classical"), "detect.method must be 'unet' or 'classical'")
        _check(0 < self.threshold < 1, "detect.threshold must be in (0, 1)")
        _check(0 <= self.min_area_um2 < self.max_area_um2, "detect area bounds must satisfy 0 <= min < max")
        _check(0 <= self.edge_min_area_um2 <= self.min_area_um2, "detect.edge_min_area_um2 must be in [0, min_area_um2]")
        _check(0 <= self.min_score <= 1, "detect.min_score must be in [0, 1]")
        _check(0 <= self.min_nucleus_fraction < 1, "detect.min_nucleus_fraction must be in [0, 1)")
        _check(0 <= self.min_core_um2 <= self.min_area_um2, "detect.min_core_um2 must be in [0, min_area_um2]")
        _check(self.device in ("auto", "cpu", "cuda"), "detect.device must be auto, cpu or cuda")
        _check(0 < self.classical_nucleus_threshold < 1, "detect.classical_nucleus_threshold must be in (0, 1)")


@dataclass(frozen=True)
class PatchConfig:
    size_px: int = 400
    field_um: float = 29.0  # the seed's physical field around each cell

    def __post_init__(self):
        _check(16 <= self.size_px <= 2048, "patches.size_px must be in [16, 2048]")
        _check(5 <= self.field_um <= 200, "patches.field_um must be in [5, 200]")

    @property
    def mpp(self) -> float:
        return self.field_um / self.size_px


@dataclass(frozen=True)
class QcConfig:
    min_focus: float = 0.3  # at the detector's 0.5 µm/px real sharp fields score 0.6-0.9, blurred by 1 µm < 0.2
    stain_reference: tuple[float, ...] = (0.405, 0.679, 0.602)  # mean OD direction of TXL-PBC fields
    max_stain_angle_deg: float = 15.0  # real fields lie within 9°
    min_coverage: float = 0.2
    max_coverage: float = 0.9
    max_outside_colours: float = 0.25  # warn when a larger share of the leukocytes lies outside the classifier's training colours

    def __post_init__(self):
        _check(self.min_focus >= 0, "qc.min_focus must be >= 0")
        _check(0 <= self.max_outside_colours <= 1, "qc.max_outside_colours must be in [0, 1]")
        ref = self.stain_reference
        _check(len(ref) == 3 and min(ref) >= 0 and max(ref) > 0, "qc.stain_reference must be 3 non-negative numbers")
        _check(0 < self.max_stain_angle_deg <= 90, "qc.max_stain_angle_deg must be in (0, 90]")
        _check(0 <= self.min_coverage < self.max_coverage <= 1, "qc coverage bounds must satisfy 0 <= min < max <= 1")


@dataclass(frozen=True)
class AggregateConfig:
    blast_threshold: float = 0.002  # flag when the lower bound at the held-out error rates lies above this
    blast_high_p: float = 0.9  # ... or when this many cells are confidently blasts
    blast_min_cells: int = 2
    atypical_threshold: float = 0.05
    atypical_high_p: float = 0.95
    atypical_min_cells: int = 10
    eosinophilia_pct: float = 7.0
    left_shift_pct: float = 10.0
    apl_promyelocyte_pct: float = 5.0
    rare_false_alarm: float = 0.01  # rare-population rule: its false-alarm rate on a slide without any
    min_leukocytes: int = 200  # fewer classified cells: the differential is unreliable
    bootstrap_samples: int = 4000
    seed: int = 0

    def __post_init__(self):
        for name in ("blast_threshold", "blast_high_p", "atypical_threshold", "atypical_high_p"):
            _check(0 <= getattr(self, name) <= 1, f"aggregate.{name} must be in [0, 1]")
        _check(self.blast_min_cells >= 1 and self.atypical_min_cells >= 1, "aggregate min_cells must be >= 1")
        for name in ("eosinophilia_pct", "left_shift_pct", "apl_promyelocyte_pct"):
            _check(0 <= getattr(self, name) <= 100, f"aggregate.{name} must be in [0, 100]")
        _check(0 < self.rare_false_alarm < 0.5, "aggregate.rare_false_alarm must be in (0, 0.5)")
        _check(self.min_leukocytes >= 0, "aggregate.min_leukocytes must be >= 0")
        _check(100 <= self.bootstrap_samples <= 1_000_000, "aggregate.bootstrap_samples must be in [100, 1e6]")


@dataclass(frozen=True)
class ClassifyConfig:
    model: str = "default"  # "default" (the shipped classifier), a shipped classifier's name, or a path to a weights file
    batch_size: int = 64
    device: str = "auto"
    tta: bool = False  # average over the 8 rotations/flips of the dihedral group
    input_mpp: float = 0.0  # µm/px of user images in `classify`; 0: each image spans the model's field
    review_below: float = 0.5  # "needs review" when the top class probability is below this

    def __post_init__(self):
        _check(self.batch_size >= 1, "classify.batch_size must be >= 1")
        _check(self.device in ("auto", "cpu", "cuda"), "classify.device must be auto, cpu or cuda")
        _check(0 <= self.input_mpp <= 2.0, "classify.input_mpp must be in [0, 2] (0: image spans the field)")
        _check(0 <= self.review_below <= 1, "classify.review_below must be in [0, 1]")


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "resnext_compact"  # registered classifier name (resnext50_32x4d: the paper's 400 px model)
    input_px: int = 0  # network input for the 29 µm field; 0: the architecture's default
    keep_reject: bool = True  # train PLT as an internal 16th "reject" output (never a product column)
    epochs: int = 40
    per_class_per_epoch: int = 300  # class-balanced sampling: images drawn per class per epoch
    batch_size: int = 32
    lr: float = 0.002
    weight_decay: float = 0.0005
    label_smoothing: float = 0.05
    patience: int = 8  # early stopping on validation loss
    seed: int = 0
    fold_seed: int | None = None  # patients' cross-validation folds; None: seed (a new seed alone keeps every recipe's folds)
    num_workers: int = 1
    threads: int = 1  # torch intra-op threads on CPU
    holdout_frac: float = 0.22  # held-out test share (patients where known, images otherwise)
    val_frac: float = 0.15  # validation share of the remainder: early stopping and temperature
    rotate: bool = True  # uniform 0-359 degrees
    scale_jitter: float = 0.25  # field scaled by a factor in [1 - s, 1 + s]
    hed_jitter: float = 0.03  # haematoxylin/eosin/DAB stain intensity jitter
    stain_density: float = 0.0  # every channel's optical density × a factor in [1/(1+s), 1+s] (log-uniform)
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.15
    hue: float = 0.03
    blur_prob: float = 0.2
    blur_max_sigma: float = 1.0  # px at the network input: defocus and softer optics, sigma drawn from [0.1, this]
    jpeg_prob: float = 0.0  # re-encode as JPEG at quality 40-95 (other scanners' compression)
    balance_sources: bool = False  # each source of a class drawn equally often (train/loop.sampling_weights)
    balance_patients: bool = False  # a patient's share of its class grows with the root of its cells, not in proportion
    context_prob: float = 0.0  # a leukocyte laid on another lab's background (train/context.py)
    stain_mix: float = 0.0  # share of training images given another training image's colours (Reinhard, CIELAB)
    standardise_colours: bool = False  # every input's colours moved to the training leukocytes' mean (card.colour_reference)
    slide_colours: bool = False  # each patient's (a lab's) cells moved together to the training mean (card.slide_colour_target)
    field_leukocytes: bool = False  # TXL-PBC's leukocytes of four sources, class unknown, train "not rejected"
    ema_decay: float = 0.0  # exponential moving average of the weights, evaluated and kept; 0: off
    drawn_twice: tuple[str, ...] = ()  # classes sampled twice per epoch: the non-blasts the blast test mistakes
    mixup: float = 0.0  # mixup's Beta(a, a) between a batch's known-class images (timm's Mixup); 0: off
    cutmix: float = 0.0  # CutMix's Beta(a, a), drawn instead of mixup on half the batches when both are on; 0: off
    mix_prob: float = 1.0  # share of batches mixed when mixup or cutmix is on
    init_weights: str = ""  # start from this state_dict or weights file (fine-tuning), not from random

    def __post_init__(self):
        _check(self.input_px == 0 or 32 <= self.input_px <= 1024, "train.input_px must be 0 or in [32, 1024]")
        _check(self.epochs >= 1, "train.epochs must be >= 1")
        _check(self.per_class_per_epoch >= 1, "train.per_class_per_epoch must be >= 1")
        _check(self.batch_size >= 1, "train.batch_size must be >= 1")
        _check(0 < self.lr < 1, "train.lr must be in (0, 1)")
        _check(0 <= self.weight_decay < 1, "train.weight_decay must be in [0, 1)")
        _check(0 <= self.label_smoothing < 0.5, "train.label_smoothing must be in [0, 0.5)")
        _check(self.patience >= 1, "train.patience must be >= 1")
        _check(self.num_workers >= 0, "train.num_workers must be >= 0")
        _check(self.threads >= 1, "train.threads must be >= 1")
        _check(0 < self.holdout_frac < 0.6, "train.holdout_frac must be in (0, 0.6)")
        _check(0 < self.val_frac < 0.6, "train.val_frac must be in (0, 0.6)")
        _check(0 <= self.scale_jitter < 0.5, "train.scale_jitter must be in [0, 0.5)")
        _check(self.ema_decay == 0 or 0.9 <= self.ema_decay < 1, "train.ema_decay must be 0 (off) or in [0.9, 1)")
        _check(set(self.drawn_twice) <= set(CLASS_CODES), f"train.drawn_twice must name classes of {', '.join(CLASS_CODES)}")
        for name in ("hed_jitter", "brightness", "contrast", "saturation", "blur_prob", "jpeg_prob", "context_prob", "stain_mix"):
            _check(0 <= getattr(self, name) <= 1, f"train.{name} must be in [0, 1]")
        _check(0 <= self.hue <= 0.5, "train.hue must be in [0, 0.5]")
        _check(0.1 <= self.blur_max_sigma <= 8, "train.blur_max_sigma must be in [0.1, 8] (px at the network input)")
        _check(0 <= self.stain_density <= 3, "train.stain_density must be in [0, 3]")
        _check(0 <= self.mixup <= 4 and 0 <= self.cutmix <= 4, "train.mixup and train.cutmix must be in [0, 4] (0: off)")
        _check(0 < self.mix_prob <= 1, "train.mix_prob must be in (0, 1]")


@dataclass(frozen=True)
class ExportConfig:
    gzip_above_cells: int = 50000  # detections.geojson becomes .geojson.gz above this many cells
    gallery_size: int = 24  # blast candidates and needs-review cells shown in the report

    def __post_init__(self):
        _check(self.gzip_above_cells >= 0, "export.gzip_above_cells must be >= 0")
        _check(1 <= self.gallery_size <= 500, "export.gallery_size must be in [1, 500]")


@dataclass(frozen=True)
class DaskConfig:
    workers: int = 0  # 0: one per core
    threads_per_worker: int = 1
    connect_timeout_s: float = 10.0

    def __post_init__(self):
        _check(self.workers >= 0, "dask.workers must be >= 0")
        _check(self.threads_per_worker >= 1, "dask.threads_per_worker must be >= 1")
        _check(self.connect_timeout_s > 0, "dask.connect_timeout_s must be > 0")


RESULT_SECTIONS = ("slide", "aoi", "tiling", "detect", "patches", "aggregate", "qc", "classify", "export")


@dataclass(frozen=True)
class Config:
    slide: SlideConfig = field(default_factory=SlideConfig)
    aoi: AoiConfig = field(default_factory=AoiConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    patches: PatchConfig = field(default_factory=PatchConfig)
    aggregate: AggregateConfig = field(default_factory=AggregateConfig)
    qc: QcConfig = field(default_factory=QcConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    dask: DaskConfig = field(default_factory=DaskConfig)

    def to_dict(self) -> dict:
        """Plain JSON/YAML types (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def sha256(self, sections: tuple[str, ...] | None = RESULT_SECTIONS) -> str:
        """Hash of `sections` (None: all). By default only those that change a screening's results,
        so a new cluster (`dask`) or training setting (`train`) does not re-screen a night."""
        tree = self.to_dict()
        return hashlib.sha256(
            json.dumps({k: v for k, v in tree.items() if sections is None or k in sections}, sort_keys=True).encode()
        ).hexdigest()

    def replace(self, section: str, **changes) -> "Config":
        """A copy with some values of one section changed (validated like a loaded file)."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + k for k in unknown)}; allowed: {', '.join(sorted(names))}")
    values = {}
    for key, value in data.items():
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            values[key] = _build(kind, value, f"{where}{key}.")
        else:
            values[key] = _coerce(kind, value, where + key)
    return cls(**values)


def _coerce(kind, value, name: str):
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        for option in typing.get_args(kind):
            try:
                return _coerce(option, value, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name}: {value!r} is not of type {kind}")
    if kind is type(None):
        if value is None:
            return None
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind in (str, bool) and isinstance(value, kind):
        return value
    elif typing.get_origin(kind) is tuple and isinstance(value, (list, tuple)):
        (item,) = typing.get_args(kind)[:1]
        return tuple(_coerce(item, v, f"{name}[]") for v in value)
    raise ConfigError(f"{name}: {value!r} is not of type {getattr(kind, '__name__', kind)}")


def load_config(path: str | Path | None = None) -> Config:
    """Shipped defaults, overridden by the YAML file at `path` (partial files are fine)."""
    return Config() if path is None else load_dataclass(Config, path)


def load_dataclass(cls, path: str | Path):
    """Any config dataclass (e.g. a training pipeline's) from YAML, checked like the main config."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError("config file not found", path) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid YAML ({exc.__class__.__name__})", path) from None
    try:
        return _build(cls, data, "")
    except ConfigError as exc:
        raise ConfigError(str(exc), path) from None
    except TypeError as exc:
        raise ConfigError(str(exc), path) from None
