"""The morning loop on a real screen of the demo slide: a reviewer reclassifies 10 cells, deletes
2 and adds 1 in QuPath; import-review stores it and prints agreement figures that the test
recomputes on its own; export-cells writes a tree `train` reads."""

from __future__ import annotations

import json
import re
import shutil
import uuid

import numpy as np
import pytest
import zarr
from PIL import Image
from sklearn.metrics import cohen_kappa_score

from wsi_screen.cell_images import read_folder_tree
from wsi_screen.checksum import sha256
from wsi_screen.classes import CLASS_CODES, CLASS_NAMES
from wsi_screen.cli import main
from wsi_screen.export.geojson import read_features
from wsi_screen.model_files import DEFAULT_WEIGHTS

pytestmark = pytest.mark.slow  # screens the demo slide

CODE_OF = {name: code for code, name in CLASS_NAMES.items()} | {"Rejected": "REJ"}
EDITS = [
    "Myeloblast",
    "Monoblast",
    "MYO",
    "Rejected",
    "Rejected",
    "Lymphocyte (typical)",
    "Monocyte",
    "Eosinophil",
    "Basophil",
    "Erythroblast",
]


@pytest.fixture
def reviewed(demo_screened, tmp_path):
    """A copy of the real output and the reviewer's export, with what the reviewer did."""
    result = tmp_path / "demo_smear"
    shutil.copytree(demo_screened, result)
    features = read_features(result / "detections.geojson")
    cells = [f for f in features if f["properties"]["objectType"] == "cell"]
    shown = {f["id"]: CODE_OF[f["properties"]["classification"]["name"]] for f in cells}
    edited: dict[str, str] = {}
    rejected = [f for f in cells if shown[f["id"]] == "REJ"]
    if rejected:  # a model-"Rejected" object the reviewer calls a leukocyte
        rejected[0]["properties"]["classification"]["name"] = "Neutrophil (segmented)"
        edited[rejected[0]["id"]] = "NGS"
    for name in EDITS[: 10 - len(edited)]:
        target = next(f for f in cells if f["id"] not in edited and shown[f["id"]] != CODE_OF.get(name, name))
        target["properties"]["classification"] = {"name": name, "color": [1, 2, 3]}
        edited[target["id"]] = CODE_OF.get(name, name)
    deleted = [f["id"] for f in cells if f["id"] not in edited][:2]
    kept = [f for f in features if f["id"] not in deleted]
    added = {
        "type": "Feature",
        "id": str(uuid.uuid4()),
        "geometry": {"type": "Polygon", "coordinates": [[[100, 100], [140, 100], [140, 140], [100, 140], [100, 100]]]},
        "properties": {"objectType": "detection", "classification": {"name": "Monocyte", "color": [0, 0, 0]}},
    }
    review = tmp_path / "review.geojson"
    review.write_text(json.dumps({"type": "FeatureCollection", "features": kept + [added]}))
    return result, review, shown, edited, deleted


def test_import_review_stores_labels_and_prints_agreement_recomputed_here(reviewed, capsys, tmp_path):
    result, review, shown, edited, deleted = reviewed
    assert len(edited) == 10 and len(deleted) == 2
    assert main(["import-review", str(review), str(result), "--reviewer", "Dr. A. Reviewer"]) == 0
    printed = capsys.readouterr().out

    uuids = {
        f["id"]: int(f["properties"]["measurements"]["cell_id"])
        for f in read_features(result / "detections.geojson")
        if f["properties"]["objectType"] == "cell"
    }
    n = len(uuids)
    truth = np.array([""] * n, dtype="U3")
    for fid, i in uuids.items():
        truth[i] = "REJ" if fid in deleted else edited.get(fid, shown[fid])
    store = zarr.open_group(str(result / "cells.zarr"), mode="r")
    predicted, p_reject = store["cells/predicted"][:], store["cells/p_reject"][:]
    model = np.where(p_reject > 0.5, "REJ", predicted)
    assert list(store["cells/reviewer_class"][:]) == list(truth)
    actions = store["cells/review_action"][:]
    assert (
        (actions == "reclassified").sum() == len(edited)
        and (actions == "deleted").sum() == 2
        and (actions == "kept").sum() == n - len(edited) - 2
    )

    kappa = cohen_kappa_score(truth, model)
    blast_truth, blast_call = np.isin(truth, ["MYO", "MOB"]), np.isin(model, ["MYO", "MOB"])  # rejected objects are never counted blasts
    sensitivity = (blast_call & blast_truth).sum() / blast_truth.sum()
    specificity = (~blast_call & ~blast_truth).sum() / (~blast_truth).sum()
    assert blast_truth.sum() >= 3 and 0 < kappa < 1
    assert f"{len(edited)} reclassified, 2 deleted, 0 unlabelled, 1 added" in printed
    assert f"Cohen's kappa {kappa:.3f} over {n} reviewed cells (the paper's human re-annotators: 0.84 / 0.87)" in printed
    assert f"sensitivity {sensitivity:.1%} ({blast_truth.sum()} reviewer blasts), specificity {specificity:.1%}" in printed

    record = store.attrs["review"]
    assert (
        record["reviewer"] == "Dr. A. Reviewer" and re.match(r"\d{4}-\d\d-\d\dT", record["time"]) and record["source"] == "review.geojson"
    )
    assert (
        record["models_reviewed"]["classifier_sha256"] == sha256(DEFAULT_WEIGHTS)
        and len(record["models_reviewed"]["detector_sha256"]) == 64
    )
    assert (
        record["kappa"] == pytest.approx(kappa) and record["added"][0]["class"] == "MON" and record["added"][0]["x"] == pytest.approx(120.0)
    )

    dest = tmp_path / "train_tree"
    assert main(["export-cells", str(result), str(dest)]) == 0
    table = read_folder_tree(dest)
    expected = {c: int((truth == c).sum()) for c in CLASS_CODES if (truth == c).any()}
    assert table["label"].value_counts().to_dict() == expected  # rejected and deleted cells stay out
    first = Image.open(table["file"].iloc[0])
    assert first.size == (400, 400)


def test_bad_review_is_one_line_and_changes_nothing(reviewed, capsys, tmp_path):
    result, review, *_ = reviewed
    data = json.loads(review.read_text())
    cell = next(f for f in data["features"] if f["properties"]["objectType"] == "cell")
    cell["properties"]["classification"]["name"] = "Tumor"
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps(data))
    assert main(["import-review", str(bad), str(result), "--reviewer", "A"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "class 'Tumor' is none of the 15 classes" in err[0]
    partial = tmp_path / "partial.geojson"
    partial.write_text(json.dumps({"type": "FeatureCollection", "features": json.loads(review.read_text())["features"][:5]}))
    assert main(["import-review", str(partial), str(result), "--reviewer", "A"]) == 2
    assert "export all objects, not a selection" in capsys.readouterr().err
    assert "reviewer_class" not in zarr.open_group(str(result / "cells.zarr" / "cells"), mode="r")
    assert main(["export-cells", str(result), str(tmp_path / "t")]) == 2 and not (tmp_path / "t").exists()
