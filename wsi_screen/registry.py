"""One registry for every model: builders registered by name and task (timm's `@register_model` /
`create_model`), the card that travels with every weights file (as JSON beside it, and inside it),
and weights loading (which file a name means: model_files.py). Preprocessing
(field or µm/px, input size, mean/std) is read from the card, never repeated by callers or configs."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import torch
from torch import nn
from torchvision.models import resnet

from .classes import CLASS_CODES
from .errors import ModelError
from .model_files import resolve_model


@dataclass(frozen=True)
class Card:
    """What every card names: the registered architecture its weights fit."""

    arch: str
    task: ClassVar[str]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict) -> "Card":
        """The card of `data`'s task (cards written before the task was recorded are classifiers)."""
        cls = {c.task: c for c in (ClassifierCard, DetectorCard)}[data.get("task", "classifier")]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ClassifierCard(Card):
    """Everything needed to preprocess inputs and interpret outputs of a cell classifier."""

    task: ClassVar[str] = "classifier"
    input_px: int
    field_um: float = 29.0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    class_codes: tuple[str, ...] = CLASS_CODES
    reject_codes: tuple[str, ...] = ()  # extra internal outputs (e.g. PLT), never product columns
    temperature: float = 1.0  # logits are divided by it before the softmax (fitted on validation data)
    colour_reference: tuple[float, ...] = ()  # CIELAB means then stds every input is moved to; (): colours as read
    colour_range: dict = field(default_factory=dict)  # the training cells' colours (colour_range.fit_colour_range); {}: unknown
    slide_colour_target: tuple[float, ...] = ()  # CIELAB means then stds a slide's mean cell colours move to (slide_colours); (): none
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @property
    def mpp(self) -> float:
        return self.field_um / self.input_px

    @property
    def num_outputs(self) -> int:
        return len(self.class_codes) + len(self.reject_codes)


@dataclass(frozen=True)
class DetectorCard(Card):
    """A leukocyte segmenter: per-pixel maps (`channels`) of an RGB image at `mpp` µm/px."""

    task: ClassVar[str] = "detector"
    mpp: float
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channels: tuple[str, ...] = ("cell", "core")
    provenance: dict = field(default_factory=dict)

    @property
    def num_outputs(self) -> int:
        return len(self.channels)


ModelCard = ClassifierCard  # the classifier's card under its first name


@dataclass(frozen=True)
class _Entry:
    build: Callable[[int], nn.Module]
    input_px: int
    task: str


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, input_px: int, task: str = "classifier"):
    """Decorator: register `build(num_outputs) -> nn.Module` under `name` for `task`, with its default
    input size (classifiers: px of the 29 µm field; detectors: px of a training crop side)."""

    def wrap(build):
        _REGISTRY[name] = _Entry(build, input_px, task)
        return build

    return wrap


def list_models(task: str | None = None) -> list[str]:
    return sorted(name for name, e in _REGISTRY.items() if task in (None, e.task))


def model_task(name: str) -> str:
    return _entry(name).task


def default_input_px(name: str) -> int:
    return _entry(name).input_px


def create_model(name: str, num_outputs: int = len(CLASS_CODES)) -> nn.Module:
    """A randomly initialised model (no pretrained weights exist offline)."""
    return _entry(name).build(num_outputs)


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown architecture {name!r}; registered: {', '.join(list_models())}") from None


@register_model("resnext50_32x4d", input_px=400)
def resnext50_32x4d(num_outputs: int) -> nn.Module:
    """Matek et al. 2019: ResNeXt-50 (32×4d) on the full 400 px patch; for GPU training."""
    return resnet.resnext50_32x4d(weights=None, num_classes=num_outputs)


class CompactResNeXt(nn.Module):
    """ResNeXt bottleneck stages (torchvision `Bottleneck` with grouped 3×3 convolutions) at a
    quarter of ResNeXt-50's width and depth [1, 2, 2, 1]: trains on one CPU thread at 128 px."""

    def __init__(self, num_outputs: int, planes=(16, 32, 64, 128), blocks=(1, 2, 2, 1), groups=8, base_width=16):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        layers, inplanes = [], 32
        for i, (p, n) in enumerate(zip(planes, blocks)):
            stride = 1 if i == 0 else 2
            for j in range(n):
                out = p * resnet.Bottleneck.expansion
                down = None
                if j == 0 and (stride != 1 or inplanes != out):
                    down = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
                layers.append(resnet.Bottleneck(inplanes, p, stride if j == 0 else 1, down, groups, base_width))
                inplanes = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(inplanes, num_outputs))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, resnet.Bottleneck):
                nn.init.zeros_(m.bn3.weight)  # each block starts as identity: stable from scratch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.stem(x)))


@register_model("resnext_compact", input_px=128)
def resnext_compact(num_outputs: int) -> nn.Module:
    return CompactResNeXt(num_outputs)


def _timm(name: str, num_outputs: int) -> nn.Module:
    import timm  # imported on use: the product's default model does not need it

    return timm.create_model(name, pretrained=False, num_classes=num_outputs)


@register_model("resnext26ts", input_px=96)
def resnext26ts(num_outputs: int) -> nn.Module:
    """timm's ResNeXt-26 (cardinality 32, 'tiered' stem), 8.3 M parameters: ResNeXt at a depth and
    field size a 2-core CPU trains in minutes and runs at hundreds of cells/s."""
    return _timm("resnext26ts", num_outputs)


@register_model("resnet18d", input_px=96)
def resnet18d(num_outputs: int) -> nn.Module:
    """timm's ResNet-18-D: the plain residual baseline beside the ResNeXts."""
    return _timm("resnet18d", num_outputs)


@register_model("mobilenetv3_large_100", input_px=128)
def mobilenetv3_large_100(num_outputs: int) -> nn.Module:
    """timm's MobileNetV3-Large: depthwise convolutions, so it reaches 128 px of the field (0.23 µm a
    pixel) at hundreds of cells/s on a CPU without bfloat16, where resnext26ts at 112 px runs about
    100. Recipe r15 (docs/classifier.md): trained from scratch it fell well behind resnext26ts."""
    return _timm("mobilenetv3_large_100", num_outputs)


@register_model("regnetx_006", input_px=112)
def regnetx_006(num_outputs: int) -> nn.Module:
    """timm's RegNetX-600MF: ResNeXt's bottleneck with grouped 3×3 convolutions (RegNet's "X" block),
    its widths and depths searched for accuracy per FLOP; 5.7 M parameters, about 3.5× resnext26ts's
    float32 forward at 112 px on a CPU without bfloat16 (recipe r22, docs/classifier.md)."""
    return _timm("regnetx_006", num_outputs)


@register_model("unet_mobilenetv2_050", input_px=128, task="detector")
def unet_mobilenetv2_050(num_outputs: int) -> nn.Module:
    """The shipped detector: a small smp U-Net (MobileNetV2-0.5 encoder, depth 4). No squeeze-
    excitation, so a pixel's output depends only on its neighbourhood and tiling cannot change it."""
    import segmentation_models_pytorch as smp

    return smp.Unet("tu-mobilenetv2_050", encoder_weights=None, encoder_depth=4, decoder_channels=(32, 24, 16, 8), classes=num_outputs)


def save_weights(model: nn.Module, card: Card, path: str | Path, half: bool = True) -> Path:
    """One file holding the card and the state dict (fp16 by default), plus the card as JSON beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).cpu() for k, v in model.state_dict().items()}
    card_json = json.dumps({"task": card.task, **card.to_dict()}, indent=2)
    torch.save({"card": json.loads(card_json), "state_dict": state}, path)  # plain types: loads with weights_only
    path.with_suffix(".json").write_text(card_json + "\n")
    return path


def _read(path: Path, task: str) -> tuple[Card, dict]:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        card, state = Card.from_dict(blob["card"]), blob["state_dict"]
    except Exception as exc:  # torch raises many types for corrupt files
        raise ModelError(f"not a wsi_screen {task} file ({exc.__class__.__name__})", path) from None
    if card.task != task:
        raise ModelError(f"holds a {card.task}, not a {task}", path)
    if task == "classifier" and tuple(card.class_codes) != CLASS_CODES:
        raise ModelError(f"model has {len(card.class_codes)} classes {card.class_codes}; expected the 15 codes {CLASS_CODES}", path)
    return card, state


def load_card(name_or_path: str | Path | None, task: str = "classifier") -> Card:
    """The card of a model (see resolve_model), without building it."""
    return _read(resolve_model(name_or_path, task), task)[0]


def load_model(
    name_or_path: str | Path | None = None, device: str | torch.device = "cpu", task: str = "classifier"
) -> tuple[nn.Module, Card]:
    """Model in eval mode and its card; every way a file can be unusable is a ModelError naming it."""
    path = resolve_model(name_or_path, task)
    card, state = _read(path, task)
    model = create_model(card.arch, card.num_outputs)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise ModelError(f"weights do not match {card.arch} with {card.num_outputs} outputs: {str(exc)[:200]}", path) from None
    return model.to(device).eval(), card


def fold_batchnorm(model):
    """Fold each eval-mode BatchNorm2d into the Conv2d registered just before it in the same parent
    (the order in which smp's and timm's blocks apply them); a BN with a built-in activation
    (timm's BatchNormAct2d) keeps that activation. Returns the model, changed in place."""
    from torch.nn.utils import fuse_conv_bn_eval

    for parent in list(model.modules()):
        children = list(parent._modules.items())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels:
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                act = getattr(bn, "act", None)
                setattr(parent, bn_name, nn.Sequential(bn.drop, act) if act is not None else nn.Identity())
    return model


def for_inference(model: nn.Module, device: str | torch.device) -> nn.Module:
    """Eval mode, batch norm folded into the convolutions and channels_last (oneDNN's fast layout on
    CPU, tensor cores on CUDA): about 1.5-2x faster on CPU. Changes the model in place; never use
    it on a model that will be trained or saved."""
    return fold_batchnorm(model.eval()).to(device, memory_format=torch.channels_last)


def native_bf16() -> bool:
    """Does this CPU compute bfloat16 natively (AVX512-BF16 or AMX)? There, bfloat16 autocast
    runs a forward pass two to three times as fast; elsewhere it would be emulated, and slower."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_device(device: str = "auto") -> torch.device:
    """'auto': CUDA where there is a GPU, else the CPU; any other name as given."""
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))


def precision(device: torch.device) -> str:
    """The arithmetic a forward pass on `device` runs in: float16 on CUDA, bfloat16 on CPUs that
    compute it natively, float32 elsewhere (the model cards' figures are measured the same way).
    report.json records it: calls move slightly between them (docs/classifier.md)."""
    if device.type == "cuda":
        return "float16"
    return "bfloat16" if native_bf16() else "float32"


def forward_dtype(device: torch.device) -> torch.dtype:
    """The dtype a forward pass computes in on `device` (`precision`): autocast's, and that of the
    inputs classification hands it."""
    return {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(precision(device), torch.float32)


def mixed_precision(device: torch.device) -> torch.autocast:
    """The autocast that runs a forward pass on `device` in its `precision`."""
    dtype = forward_dtype(device)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
