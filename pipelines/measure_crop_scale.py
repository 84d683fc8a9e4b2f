"""µm/px of the PBC and DeepAPL single-cell crops (shared/data/cells), the basis of CROP_MPP.

The crops carry no scale, and the two sources could differ. Red cells are ≈ 7.5 µm across in any
smear, so the same red-cell segmentation (wsi_screen/train/red_cells.py: green-channel Otsu mask,
purple/leukocyte exclusion, whole round cells only) is run on a sample of each source's crops, and
each source's median area-equivalent diameter gives 7.5 µm / diameter. The two medians agree (ratio
DeepAPL/PBC ≈ 1.00, 95 % CI from a bootstrap over DeepAPL patients and PBC images), hence one
constant for both sources. Cross-check: the same measurement on TXL-PBC's PBC fields (360×363 and
366×369 px, the same CellaVision images uncropped) gives the same diameter; matching its segmented
cells to its RBC boxes shows the boxes are ~9 % larger than the cells, which is why the boxes'
scale (fields.estimate_mpp, ≈ 0.09 µm/px) was too small.

    PYTHONPATH=$PWD python pipelines/measure_crop_scale.py [--data ../shared/data] [--n 300] [--seed 0]

Prints a table and writes docs/crop_scale.json."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from wsi_screen.cell_images import CROP_MPP, read_image, read_manifest
from wsi_screen.train.fields import RBC_DIAMETER_UM, estimate_mpp, load_fields
from wsi_screen.train.red_cells import segment_red_cells

REPO = Path(__file__).resolve().parents[1]
PBC_FIELD_SIZES = {(360, 363), (366, 369)}
MATCH_IOU = 0.6
BOOTSTRAP = 2000


def iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def measure(paths, boxes=None) -> tuple[list[list[float]], list[float]]:
    """Red-cell diameters (px) per image; with each image's RBC boxes, also the mean box side over the
    diameter of every segmented cell that matches a box."""
    diameters, box_ratios = [], []
    for i, path in enumerate(paths):
        cells = segment_red_cells(read_image(path))
        diameters.append([c.equivalent_diameter_area for c in cells])
        for c in cells if boxes is not None else []:
            y0, x0, y1, x1 = c.bbox
            best = max(boxes[i], key=lambda b: iou((x0, y0, x1, y1), b), default=None)
            if best is not None and iou((x0, y0, x1, y1), best) >= MATCH_IOU:
                box_ratios.append((best[2] - best[0] + best[3] - best[1]) / 2 / c.equivalent_diameter_area)
    return diameters, box_ratios


def bootstrap_medians(diameters: list[list[float]], clusters: list[str], rng: np.random.Generator) -> np.ndarray:
    """Median diameter over resamples of whole clusters (a patient's images share a smear and stain)."""
    pooled: dict[str, list[float]] = {}
    for d, k in zip(diameters, clusters):
        pooled.setdefault(k, []).extend(d)
    groups = [np.asarray(v) for v in pooled.values() if v]
    draws = (rng.integers(0, len(groups), len(groups)) for _ in range(BOOTSTRAP))
    return np.array([np.median(np.concatenate([groups[j] for j in idx])) for idx in draws])


def ci(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


@click.command()
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=REPO.parent / "shared" / "data",
    show_default=True,
    help="shared/data: cells/ and detection/txl_pbc/.",
)
@click.option("--n", default=300, show_default=True, help="Images sampled per set.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=REPO / "docs" / "crop_scale.json", show_default=True)
def main(data: Path, n: int, seed: int, out: Path) -> None:
    cells = read_manifest(data / "cells" / "manifest.csv")
    txl_root = data / "detection" / "txl_pbc"
    fields = [f for split in ("train", "val") for f in load_fields(txl_root, split) if (f.width, f.height) in PBC_FIELD_SIZES]
    sample = {
        src: cells[cells.source == src].sample(min(n, int((cells.source == src).sum())), random_state=seed) for src in ("pbc", "deepapl")
    }
    txl = [fields[i] for i in np.random.default_rng(seed).choice(len(fields), min(n, len(fields)), replace=False)]

    diameters, clusters = {}, {}
    for src, s in sample.items():
        diameters[src], _ = measure(s.file)
        clusters[src] = [p or f for p, f in zip(s.patient, s.file)]  # PBC has no patients: its images are the clusters
    diameters["txl_pbc"], box_ratios = measure([f.image for f in txl], [f.rbc_boxes for f in txl])
    clusters["txl_pbc"] = [str(f.image) for f in txl]

    rng = np.random.default_rng(1)
    boot = {name: bootstrap_medians(diameters[name], clusters[name], rng) for name in diameters}
    result: dict = {"rbc_diameter_um": RBC_DIAMETER_UM, "n_per_set": n, "seed": seed, "sets": {}}
    for name, per_image in diameters.items():
        d = np.concatenate([np.asarray(x, dtype=float) for x in per_image])
        med = float(np.median(d))
        result["sets"][name] = {
            "images": len(per_image),
            "images_with_red_cells": sum(1 for x in per_image if x),
            "clusters": len(set(clusters[name])),
            "red_cells": int(d.size),
            "median_diameter_px": med,
            "median_diameter_ci95": ci(boot[name]),
            "q25_q75_px": [float(q) for q in np.percentile(d, [25, 75])],
            "um_per_px": RBC_DIAMETER_UM / med,
            "um_per_px_ci95": [RBC_DIAMETER_UM / x for x in ci(boot[name])[::-1]],
        }
    both = np.concatenate([x for name in ("pbc", "deepapl") for x in map(np.asarray, diameters[name])])
    sets = result["sets"]
    result["ratio_deepapl_over_pbc"] = sets["deepapl"]["median_diameter_px"] / sets["pbc"]["median_diameter_px"]
    result["ratio_deepapl_over_pbc_ci95"] = ci(boot["deepapl"] / boot["pbc"])
    result["crop_um_per_px"] = RBC_DIAMETER_UM / float(np.median(both))
    result["txl_box_side_over_diameter"] = {"matched_cells": len(box_ratios), "median": float(np.median(box_ratios))}
    result["txl_box_um_per_px"] = float(np.median(estimate_mpp(fields)))
    result["repo_crop_mpp"] = CROP_MPP

    click.echo(f"{'set':<9}{'images':>7}{'cells':>7}{'diameter px [95% CI]':>24}{'µm/px [95% CI]':>26}")
    for name, s in sets.items():
        (dl, dh), (ml, mh) = s["median_diameter_ci95"], s["um_per_px_ci95"]
        click.echo(
            f"{name:<9}{s['images']:>7}{s['red_cells']:>7}{s['median_diameter_px']:>9.1f} [{dl:.1f}, {dh:.1f}]"
            f"{s['um_per_px']:>11.4f} [{ml:.4f}, {mh:.4f}]"
        )
    lo, hi = result["ratio_deepapl_over_pbc_ci95"]
    click.echo(f"DeepAPL / PBC diameter: {result['ratio_deepapl_over_pbc']:.3f} [{lo:.3f}, {hi:.3f}] (patients / images resampled)")
    click.echo(f"crops, both sources: {result['crop_um_per_px']:.4f} µm/px (CROP_MPP = {CROP_MPP})")
    click.echo(
        f"TXL-PBC RBC box side / segmented diameter: {result['txl_box_side_over_diameter']['median']:.3f} "
        f"({len(box_ratios)} cells); box-based scale (estimate_mpp): {result['txl_box_um_per_px']:.4f} µm/px"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
