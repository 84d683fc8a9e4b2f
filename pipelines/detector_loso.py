"""Leave-one-source-out detector runs over TXL-PBC's four sources (wsi_screen.train.loso), each
≤ 30 min on both cores with configs/detector_loso.yaml; resumable (finished sources are skipped).
Writes OUT/<source>/result.json, OUT/<source>/gallery/ and OUT/loso.json (the runs, their config and
the per-source summary; copied to docs/detector/loso.json, whose table pipelines/doc_tables.py renders).

    python pipelines/detector_loso.py ../shared/data/detection/txl_pbc -o runs/loso --config configs/detector_loso.yaml
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from wsi_screen.config import load_dataclass
from wsi_screen.registry import load_card
from wsi_screen.train.loso import SOURCES, LosoConfig, run_one, summarize_loso


@click.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--source", "sources", multiple=True, type=click.Choice(SOURCES), help="Left-out source(s); default: all four.")
@click.option("--retest", is_flag=True, help="Test complete runs again with their trained models (after a change to the instance checks).")
@click.option(
    "--detector",
    default="default",
    show_default=True,
    help="Registered name or weights file whose card (architecture, µm/px) the runs train afresh: a candidate's, before it ships.",
)
def main(data: Path, out: Path, config_path: Path | None, sources: tuple[str, ...], retest: bool, detector: str) -> None:
    cfg = load_dataclass(LosoConfig, config_path) if config_path else LosoConfig()
    card = load_card(detector, "detector")  # its architecture and µm/px, trained afresh per run
    results = [run_one(data, s, out / s, card, cfg, retest) for s in sources or SOURCES]
    summary = summarize_loso(results)
    record = {"config": asdict(cfg), "detector": {"arch": card.arch, "mpp": card.mpp}, "runs": results, **summary}
    (out / "loso.json").write_text(json.dumps(record, indent=1, default=float))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
