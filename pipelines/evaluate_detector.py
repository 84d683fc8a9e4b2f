"""Leukocyte detector figures on a TXL-PBC split, per source and pooled, each source at one
µm/px (its median); writes OUT/detector_eval.json and the error gallery OUT/gallery/*.png. With
--second-look, what `screen` counts: detections the shipped classifier's reject output calls no
leukocyte are dropped before matching (OUT/detector_eval_second_look.json).

    python pipelines/evaluate_detector.py ../shared/data/detection/txl_pbc --split val -o runs/detector_eval [--second-look]
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from wsi_screen.config import DetectConfig
from wsi_screen.detect import make_segmenter
from wsi_screen.train.detector_eval import classifier_look, evaluate_sources, summarize
from wsi_screen.train.error_gallery import write_gallery
from wsi_screen.train.fields import load_fields, source_mpp


@click.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True)
@click.option("--split", default="val", show_default=True)
@click.option("--method", type=click.Choice(["unet", "classical"]), default="unet", show_default=True)
@click.option("--threads", default=1, show_default=True, help="Torch threads (more than the free cores slows it 20×).")
@click.option("--model", default=DetectConfig.model, show_default=True, help="Registered name or weights path.")
@click.option("--threshold", default=DetectConfig.threshold, show_default=True, help="Cell/core probability threshold.")
@click.option("--second-look", is_flag=True, help="Drop what the classifier rejects, as screen does.")
@click.option("--classifier", default="default", show_default=True, help="The second look's classifier: registered name or weights path.")
def main(
    data: Path, out: Path, split: str, method: str, model: str, threshold: float, threads: int, second_look: bool, classifier: str
) -> None:
    torch.set_num_threads(threads)
    fields = load_fields(data, split)
    mpps = source_mpp(fields)
    cfg = DetectConfig(method=method, model=model, threshold=threshold)
    segmenter = make_segmenter(cfg)
    evals = evaluate_sources(fields, mpps, segmenter, cfg, classifier_look(classifier) if second_look else None)
    result = {
        "split": split,
        "method": method,
        "model": model,
        "model_sha256": segmenter.checksum,
        "threshold": threshold,
        "second_look": f"reject output of the classifier {classifier!r}" if second_look else None,
        "source_mpp": mpps,
        "figures": summarize(evals),
        "gallery": write_gallery(evals, out / ("gallery_second_look" if second_look else "gallery")),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"detector_eval{'_second_look' if second_look else ''}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["figures"]["pooled"], indent=1))


if __name__ == "__main__":
    main()
