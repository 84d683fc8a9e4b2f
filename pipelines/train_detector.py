"""Train the shipped leukocyte U-Net on TXL-PBC fields and report val precision/recall/F1.

python pipelines/train_detector.py ../shared/data/detection/txl_pbc -o runs/detector
cp runs/detector/unet-wbc.pt runs/detector/unet-wbc.json wsi_screen/weights/   # ship it
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from wsi_screen.registry import DetectorCard
from wsi_screen.train.detector import DetectorTrainConfig, train_detector


@click.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True)
@click.option("--arch", default="unet_mobilenetv2_050", show_default=True, help="Registered detector architecture.")
@click.option("--mpp", default=0.5, show_default=True, help="µm/px the detector is trained at (and reads slides at).")
@click.option("--epochs", default=DetectorTrainConfig.epochs, show_default=True)
@click.option("--threads", default=DetectorTrainConfig.threads, show_default=True)
@click.option("--seed", default=DetectorTrainConfig.seed, show_default=True)
def main(data: Path, out: Path, arch: str, mpp: float, epochs: int, threads: int, seed: int) -> None:
    cfg = DetectorTrainConfig(epochs=epochs, threads=threads, seed=seed)
    card = DetectorCard(
        arch=arch,
        mpp=mpp,
        provenance={
            "data": "TXL-PBC (MIT licence) train split; boxes -> masks by ellipse x stain (wsi_screen.train.fields)",
            "validation": "TXL-PBC val split, centroid-in-box one-to-one matching",
            "train_config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        },
    )
    best = train_detector(data, out, "unet-wbc", card, cfg)
    print(json.dumps({"best_epoch": best}, indent=1))


if __name__ == "__main__":
    main()
