"""WBC detection precision/recall/F1 on a TXL-PBC split for the shipped U-Net and the classical
baseline, side by side (a detection matches a box when its centroid is inside it, one-to-one).

    python pipelines/evaluate_detector.py ../shared/data/detection/txl_pbc --split val
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from wsi_screen.config import DetectConfig
from wsi_screen.detect import make_segmenter
from wsi_screen.train.detector import evaluate
from wsi_screen.train.fields import estimate_mpp, load_fields


@click.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="val", show_default=True)
@click.option("--model", default=DetectConfig.model, show_default=True, help="Registered name or weights path.")
@click.option("--sliver-um", default=3.5, show_default=True, help="Also score without border-cut boxes narrower than this.")
def main(data: Path, split: str, model: str, sliver_um: float) -> None:
    fields = load_fields(data, split)
    mpps = estimate_mpp(fields)
    results = {}
    for method in ("unet", "classical"):
        cfg = DetectConfig(method=method, model=model)
        segmenter = make_segmenter(cfg)
        results[method] = evaluate(segmenter, fields, mpps, cfg).as_dict()
        results[f"{method}_without_border_slivers"] = evaluate(segmenter, fields, mpps, cfg, sliver_um=sliver_um).as_dict()
    print(json.dumps({"split": split, "fields": len(fields), **results}, indent=1))


if __name__ == "__main__":
    main()
