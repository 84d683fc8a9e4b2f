"""Cell and nucleus mask IoU against wbc_seg (GPL-3.0, evaluation only) per class, at the masks'
native pixels, at the estimated scale and ±15 %; writes OUT/outlines.json and OUT/outlines.csv.

    python pipelines/evaluate_outlines.py ../shared/data/segmentation/wbc_seg/Dataset1 ../shared/data/detection/txl_pbc -o runs/outlines
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from wsi_screen.config import DetectConfig
from wsi_screen.detect import make_segmenter
from wsi_screen.train.fields import load_fields
from wsi_screen.train.outlines import estimate_crop_mpp, load_wbc_seg, outline_scores, summarize_outlines


@click.command()
@click.argument("wbc_seg", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("txl_pbc", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True)
@click.option("--threads", default=1, show_default=True, help="Torch threads (more than the free cores slows it 20×).")
@click.option("--model", default=DetectConfig.model, show_default=True)
def main(wbc_seg: Path, txl_pbc: Path, out: Path, model: str, threads: int) -> None:
    torch.set_num_threads(threads)
    crops = load_wbc_seg(wbc_seg)
    mpp = estimate_crop_mpp(crops, load_fields(txl_pbc, "train"))
    cfg = DetectConfig(model=model)
    segmenter = make_segmenter(cfg)
    scores = outline_scores(crops, mpp, segmenter, cfg)
    result = {"wbc_seg_mpp": mpp, "model_sha256": segmenter.checksum, "figures": summarize_outlines(scores), "scale_sensitivity": {}}
    for k in (0.85, 1.15):
        result["scale_sensitivity"][f"{k:g}x"] = summarize_outlines(outline_scores(crops, mpp * k, segmenter, cfg))["all"]
    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "outlines.csv", index=False)
    (out / "outlines.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
