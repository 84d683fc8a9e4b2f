"""report.json and report.html of one slide, rendered from its SlideSummary and the records handed
in; export never reads slides or runs models. The page is self-contained for the morning read
(images embedded, no network) and shows the specimen id, never the slide label or macro image,
which can carry names."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from ..classes import CLASS_CODES, CLASS_COLORS, CLASS_NAMES  # noqa: E402
from ..records import Detection, Probabilities, SlideSummary  # noqa: E402


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
class Gallery:
    """Cell patches to show, with a caption each and optional saliency maps (same size)."""

    title: str
    patches: np.ndarray
    captions: tuple[str, ...]
    saliency: np.ndarray | None = None


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
    """Thumbnail with the AOI outline and every cell as a dot coloured by its class."""
    fig, ax = plt.subplots(figsize=(8, 8 * thumbnail.shape[0] / max(thumbnail.shape[1], 1) + 0.5))
    ax.imshow(thumbnail)
    for poly in aoi_polygons:
        x, y = poly.exterior.xy
        ax.plot(np.asarray(x) / downsample, np.asarray(y) / downsample, color="lime", lw=1.2)
    predicted = np.asarray(predicted)
    for code in CLASS_CODES:
        sel = predicted == code
        if sel.any():
            ax.scatter(np.asarray(xs)[sel] / downsample, np.asarray(ys)[sel] / downsample, s=10, color=np.array(CLASS_COLORS[code]) / 255, label=code, edgecolors="black", linewidths=0.3)
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


def _gallery_html(g: Gallery) -> str:
    if not len(g.patches):
        return f"<h2>{html.escape(g.title)}</h2><p>None.</p>"
    cells = []
    for i, patch in enumerate(g.patches):
        overlay = ""
        if g.saliency is not None:
            s = ndi.gaussian_filter(g.saliency[i].astype(np.float32), 3)  # gradients are speckle; show where they gather
            s = np.clip(s / (np.percentile(s, 99) + 1e-9), 0, 1)
            heat = (plt.get_cmap("inferno")(s)[..., :3] * 255).astype(np.uint8)
            overlay = f'<img src="{_img((0.55 * patch + 0.45 * heat).astype(np.uint8))}" alt="saliency">'
        cells.append(f'<figure><img src="{_img(patch)}" alt="cell">{overlay}<figcaption>{html.escape(g.captions[i])}</figcaption></figure>')
    return f'<h2>{html.escape(g.title)}</h2><div class="gallery">{"".join(cells)}</div>'


_CSS = """
body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}
.banner{background:#b00020;color:#fff;padding:.6em 1em;font-weight:bold;border-radius:4px}
.flag{font-size:1.3em;padding:.6em 1em;border-radius:4px;margin:1em 0}
.flag.raised{background:#ffe0e0;border:2px solid #b00020}.flag.clear{background:#e6f4ea;border:2px solid #2e7d32}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
.row{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
.gallery{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;width:200px}
figure img{width:200px;height:200px;display:block}figcaption{font-size:.8em}
.warn{color:#b00020}
"""


def render_html(summary: SlideSummary, charts: Charts, galleries: list[Gallery], path: Path) -> None:
    """Write the report page."""
    e = html.escape
    blast, atyp, diff = summary.blast, summary.atypical, summary.differential
    headline = []
    if blast.flag:
        headline.append(f"BLASTS SUSPECTED: {blast.rule}.")
    if atyp.flag:
        headline.append(f"Atypical cells above normal: {atyp.rule}.")
    headline += [f.capitalize() + "." for f in summary.lab_flags]
    flag_html = (
        f'<div class="flag raised">{"<br>".join(e(h) for h in headline)}</div>'
        if summary.flags
        else '<div class="flag clear">No flag raised: no blast or atypical population detected above the configured thresholds.</div>'
    )
    rows = "".join(
        f"<tr><td>{e(CLASS_NAMES[c])} ({c})</td><td>{diff.counts[c]}</td><td>{diff.percent[c]:.1f}</td></tr>"
        if c in diff.percent
        else f"<tr><td>{e(CLASS_NAMES[c])} ({c})</td><td>{diff.counts[c]}</td><td>{'NRBC ' + format(diff.nrbc_per_100_wbc, '.1f') + '/100 WBC' if c == 'EBO' else 'reported apart'}</td></tr>"
        for c in CLASS_CODES
    )

    def prev_row(name, r):
        lo, hi = r.ci95
        return (
            f"<tr><td>{name}</td><td>{r.count}</td><td>{r.raw_prevalence:.2%}</td><td>{r.prevalence:.2%}</td>"
            f"<td>{lo:.2%} – {hi:.2%}</td><td>{r.expected_count:.1f}</td><td>{r.specificity:.4f}</td><td>{'yes' if r.flag else 'no'}</td></tr>"
        )

    qc = asdict(summary.qc)
    qc_rows = "".join(f"<tr><td>{e(k)}</td><td>{'—' if v is None else (format(v, '.3g') if isinstance(v, float) else e(str(v)))}</td></tr>" for k, v in qc.items() if k != "warnings")
    warnings = "".join(f'<li class="warn">{e(w)}</li>' for w in summary.warnings + summary.qc.warnings) or "<li>none</li>"
    p = summary.provenance
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>wsi_screen report — {e(summary.specimen_id)}</title>
<style>{_CSS}</style></head><body>
<div class="banner">RESEARCH USE ONLY — NOT FOR DIAGNOSIS. Automated screening; every flag needs review by a qualified morphologist.</div>
<h1>Specimen {e(summary.specimen_id)}</h1>
{flag_html}
<p>{summary.n_leukocytes} leukocytes classified in an AOI of {summary.aoi_area_mm2:.2f} mm²; {summary.needs_review} cells need review.</p>
<h2>Blast and atypical cells</h2>
<table><tr><th>test</th><th>count</th><th>raw</th><th>corrected</th><th>95% CI</th><th>expected</th><th>specificity here</th><th>flag</th></tr>
{prev_row('Blast (MYO+MOB)', blast)}{prev_row('Atypical', atyp)}</table>
<p>Corrected for the classifier's measured sensitivity and its specificity on this slide's own mix of cells (Rogan–Gladen; held-out confusion per class, composition by EM); interval from sampling and rate uncertainty; its upper end also holds if none of this slide's calls is false (labs and patients differ in false calls far more than the held-out rates say).</p>
<div class="row"><div><h2>Differential</h2><table><tr><th>class</th><th>count</th><th>per 100 WBC</th></tr>{rows}</table></div>
<div><img src="{charts.differential}" alt="differential chart"></div></div>
<h2>P(blast) distribution</h2><img src="{charts.p_blast}" alt="P blast histogram">
<h2>Slide map</h2><img src="{charts.slide_map}" alt="slide map" style="max-width:100%">
{''.join(_gallery_html(g) for g in galleries)}
<h2>Quality control</h2><table>{qc_rows}</table><ul>{warnings}</ul>
<h2>Provenance</h2><pre>{e(str({'model': p.models, 'config_sha256': p.config_sha256, 'software': p.software, 'runtime_s': p.runtime_s}))}</pre>
</body></html>"""
    Path(path).write_text(page, encoding="utf-8")


def write_report(out_dir: Path, summary: SlideSummary, detections: Sequence[Detection], calls: Probabilities, images: ReportImages) -> None:
    """report.json (the summary) and report.html: charts, the blast candidates with saliency and
    the cells that need review."""
    predicted, p_blast = calls.predicted, calls.p_blast
    charts = Charts(
        slide_map(images.thumbnail, images.downsample, images.aoi_polygons, [d.x for d in detections], [d.y for d in detections], predicted),
        differential_chart(summary.differential.percent),
        blast_histogram(p_blast, summary.blast.high_p),
    )
    top, review = summary.blast_candidates, summary.review_cells
    galleries = [
        Gallery(
            f"Top {len(top)} blast candidates (highest P(blast)), with saliency",
            images.candidates,
            tuple(f"cell {i}: P(blast) {p_blast[i]:.2f}, {predicted[i]}" for i in top),
            images.candidate_saliency,
        ),
        Gallery(
            f"Cells that need review ({summary.needs_review}; first {len(review)} shown)",
            images.review,
            tuple(f"cell {i}: {predicted[i]} at {calls.confidence[i]:.2f}" for i in review),
        ),
    ]
    render_html(summary, charts, galleries, Path(out_dir) / "report.html")
    (Path(out_dir) / "report.json").write_text(summary.to_json())
