"""report.json and report.html of one slide, rendered from its SlideSummary and the records handed
in; export never reads slides or runs models. The page is self-contained for the morning read
(images embedded, no network) and shows the specimen id, never the slide label or macro image,
which can carry names."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from ..classes import CLASS_COLORS, CLASS_NAMES, REJECTED, REJECTED_COLOR  # noqa: E402
from ..records import Detection, Probabilities, SlideSummary  # noqa: E402
from .html import render  # noqa: E402


@dataclass(frozen=True, eq=False)
class ReportImages:
    """What the page shows that export cannot make itself: the slide overview with the AOI outline
    (level-0 polygons), and the patches of the summary's blast candidates (with their saliency)
    and review cells, in the summary's order."""

    thumbnail: np.ndarray
    downsample: float  # level-0 px per thumbnail px
    aoi_polygons: tuple
    candidates: np.ndarray
    candidate_saliency: np.ndarray
    review: np.ndarray


@dataclass(frozen=True)
class Figure:
    """One gallery cell as the page shows it: data-URI images and a caption."""

    image: str
    saliency: str | None
    caption: str


@dataclass(frozen=True)
class Gallery:
    title: str
    cells: tuple[Figure, ...]


@dataclass(frozen=True)
class Charts:
    """Embedded (data-URI) images of the page."""

    slide_map: str
    differential: str
    p_blast: str


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(array: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def slide_map(thumbnail: np.ndarray, downsample: float, aoi_polygons, xs, ys, predicted) -> str:
    """Thumbnail with the AOI outline and every object as a dot coloured by its class (a class
    code, or REJECTED in grey)."""
    fig, ax = plt.subplots(figsize=(8, 8 * thumbnail.shape[0] / max(thumbnail.shape[1], 1) + 0.5))
    ax.imshow(thumbnail)
    for poly in aoi_polygons:
        x, y = poly.exterior.xy
        ax.plot(np.asarray(x) / downsample, np.asarray(y) / downsample, color="lime", lw=1.2)
    predicted = np.asarray(predicted)
    for code, rgb in (CLASS_COLORS | {REJECTED: REJECTED_COLOR}).items():
        sel = predicted == code
        if sel.any():
            colour = np.array(rgb) / 255
            x, y = np.asarray(xs)[sel] / downsample, np.asarray(ys)[sel] / downsample
            ax.scatter(x, y, s=10, color=colour, label=code, edgecolors="black", linewidths=0.3)
    if len(predicted):
        ax.legend(loc="upper right", fontsize=7, ncol=2, markerscale=1.5)
    ax.set_axis_off()
    return _png(fig)


def differential_chart(differential: dict[str, float]) -> str:
    codes = list(differential)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.barh(codes[::-1], [differential[c] for c in codes][::-1], color=[np.array(CLASS_COLORS[c]) / 255 for c in codes][::-1])
    ax.set_xlabel("per 100 leukocytes")
    ax.set_title("Differential")
    return _png(fig)


def blast_histogram(p_blast: np.ndarray, threshold: float) -> str:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(np.asarray(p_blast), bins=np.linspace(0, 1, 41), color="#777")
    ax.axvline(threshold, color="red", ls="--", label=f"high-confidence threshold {threshold:.2f}")
    ax.set_yscale("log")
    ax.set_xlabel("P(blast) = P(MYO) + P(MOB)")
    ax.set_ylabel("cells")
    ax.legend(fontsize=8)
    return _png(fig)


def gallery(title: str, patches: np.ndarray, captions: list[str], saliency: np.ndarray | None = None) -> Gallery:
    """Patches as JPEGs, each beside its saliency overlay when given."""
    cells = []
    for i, patch in enumerate(patches):
        overlay = None
        if saliency is not None:
            s = ndi.gaussian_filter(saliency[i].astype(np.float32), 3)  # gradients are speckle; show where they gather
            s = np.clip(s / (np.percentile(s, 99) + 1e-9), 0, 1)
            heat = (plt.get_cmap("inferno")(s)[..., :3] * 255).astype(np.uint8)
            overlay = _img((0.55 * patch + 0.45 * heat).astype(np.uint8))
        cells.append(Figure(_img(patch), overlay, captions[i]))
    return Gallery(title, tuple(cells))


def render_html(summary: SlideSummary, charts: Charts, galleries: list[Gallery]) -> str:
    p = summary.provenance
    provenance = {"model": p.models, "config_sha256": p.config_sha256, "software": p.software, "runtime_s": p.runtime_s}
    qc = {k: v for k, v in asdict(summary.qc).items() if k != "warnings"}
    context = {"s": summary, "charts": charts, "galleries": galleries, "qc": qc, "class_names": CLASS_NAMES}
    return render("report.html", **context, provenance=json.dumps(provenance, indent=1))


def write_report(out_dir: Path, summary: SlideSummary, detections: Sequence[Detection], calls: Probabilities, images: ReportImages) -> None:
    """report.json (the summary) and report.html: charts (rejected objects grey on the map and
    outside the P(blast) histogram), the blast candidates with saliency and the cells that need review."""
    predicted, p_blast, rejected = calls.predicted, calls.p_blast, calls.rejected
    xs, ys = [d.x for d in detections], [d.y for d in detections]
    charts = Charts(
        slide_map(images.thumbnail, images.downsample, images.aoi_polygons, xs, ys, np.where(rejected, REJECTED, predicted)),
        differential_chart(summary.differential.percent),
        blast_histogram(p_blast[~rejected], summary.blast.high_p),
    )
    top, review = summary.blast_candidates, summary.review_cells
    galleries = [
        gallery(
            f"Top {len(top)} blast candidates (highest P(blast)), with saliency",
            images.candidates,
            [f"cell {i}: P(blast) {p_blast[i]:.2f}, {predicted[i]}" for i in top],
            images.candidate_saliency,
        ),
        gallery(
            f"Cells that need review ({summary.needs_review}; first {len(review)} shown)",
            images.review,
            [f"cell {i}: {predicted[i]} at {calls.confidence[i]:.2f}" for i in review],
        ),
    ]
    (Path(out_dir) / "report.html").write_text(render_html(summary, charts, galleries), encoding="utf-8")
    (Path(out_dir) / "report.json").write_text(summary.to_json())
