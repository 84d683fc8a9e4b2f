"""A slide's review kept beside the model's results in OUT/<stem>/cells.zarr: per-cell columns
`reviewer_class` (a code, REJ or "") and `review_action`, and a `review` attribute with the
reviewer's name, the time, the source file, the added cells and the checksums of the models
that were reviewed. Everything is read and checked before anything is written."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .classes import BLAST
from .errors import StoreError, WsiScreenError
from .export.geojson import read_features
from .records import is_rejected
from .review import (
    REJ,
    Agreement,
    Review,
    agreement,
    match_review,
    read_review,
    with_reclassified,
)


@dataclass(frozen=True)
class ReviewOutcome:
    review: Review
    agreement: Agreement

    def counts(self) -> dict[str, int]:
        actions = self.review.actions
        return {a: int((actions == a).sum()) for a in ("kept", "reclassified", "deleted", "unlabelled")} | {"added": len(self.review.added)}


def model_labels(table) -> tuple[np.ndarray, np.ndarray]:
    """What the reviewer saw per cell (REJ where the reject output rejected it, else the argmax
    class) and the count's blast call (a counted cell whose argmax is a blast class)."""
    shown = np.where(is_rejected(table["p_reject"].to_numpy()), REJ, table["predicted"].to_numpy().astype("U3")).astype("U3")
    return shown, np.isin(shown, BLAST)


def import_review(result_dir: Path, review_path: Path, reviewer: str, when: str) -> ReviewOutcome:
    import zarr

    from .export.store import read_table, write_columns

    result_dir = Path(result_dir)
    store = result_dir / "cells.zarr"
    table = _classified_table(store, read_table)
    ids = _cell_ids(result_dir)
    labels, blast = model_labels(table)
    review = with_reclassified(match_review(read_review(review_path), ids, len(table), Path(review_path)), labels)
    outcome = ReviewOutcome(review, agreement(review, labels, blast))
    attrs = zarr.open_group(str(store), mode="r").attrs
    report = json.loads((result_dir / "report.json").read_text()) if (result_dir / "report.json").is_file() else {}
    record = {
        "reviewer": reviewer,
        "time": when,
        "source": Path(review_path).name,
        "models_reviewed": {
            "classifier_sha256": attrs.get("classifier_sha256"),
            "detector_sha256": report.get("model", {}).get("detector", {}).get("sha256"),
        },
        "counts": outcome.counts(),
        "added": list(review.added),
        "kappa": outcome.agreement.kappa,
    }
    write_columns(store, {"reviewer_class": review.labels.astype("U3"), "review_action": review.actions.astype("U12")}, {"review": record})
    return outcome


def _classified_table(store: Path, read_table):
    if not store.is_dir():
        raise StoreError("no cells.zarr: not a screened slide's results folder", store.parent)
    table = read_table(store)
    if not {"predicted", "p_reject"} <= set(table.columns):
        raise StoreError("cells are not classified (run `screen`, not `detect`)", store)
    return table


def _cell_ids(result_dir: Path) -> dict[str, int]:
    """Each screened cell's UUID, from the GeoJSON the reviewer's objects came from."""
    path = next((p for p in (result_dir / "detections.geojson", result_dir / "detections.geojson.gz") if p.is_file()), None)
    if path is None:
        raise WsiScreenError("no detections.geojson: cannot match the reviewer's objects to cells", result_dir)
    return {
        str(f["id"]): int(f["properties"]["measurements"]["cell_id"])
        for f in read_features(path)
        if f["properties"].get("objectType") in ("detection", "cell")
    }
