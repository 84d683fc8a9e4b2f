"""The QuPath project of a night: every field QuPath 0.5's DefaultProject reads, flagged slides
first, paths that resolve from the project folder, and a project with review data never replaced."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from wsi_screen.cli import main


def _result(out: Path, name: str, slide: Path, prevalence: float, flags: list[str], n_rejected: int | None = None) -> None:
    folder = out / name
    folder.mkdir(parents=True)
    slide.write_bytes(b"scan")
    (folder / "completed.json").write_text(json.dumps({"input": str(slide), "size": 4}))
    report = {
        "specimen_id": f"P-{name}",
        "n_leukocytes": 812,
        "blast": {"prevalence": prevalence, "ci95": [prevalence / 2, prevalence * 2]},
        "needs_review": 14,
        "flags": flags,
    }
    if n_rejected is not None:  # absent from reports written before rejected objects were held apart
        report["n_rejected"] = n_rejected
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "detections.geojson").write_text('{"type":"FeatureCollection","features":[]}')


@pytest.fixture
def night(tmp_path) -> Path:
    out, scans = tmp_path / "out", tmp_path / "scans"
    scans.mkdir()
    _result(out, "a", scans / "a.tiff", 0.001, [])
    _result(out, "b", scans / "b.svs", 0.031, ["blasts: CI above 0.2%"], n_rejected=9)
    _result(out, "c", scans / "c.tiff", 0.004, [])
    (out / "d").mkdir()  # unfinished: no completion record, left out
    return out


def test_project_lists_flagged_first_with_every_field_qupath_reads(night, capsys):
    assert main(["qupath", str(night)]) == 0
    assert "3 slides (1 flagged, listed first)" in capsys.readouterr().out
    folder = night / "qupath"
    project = json.loads((folder / "project.qpproj").read_text())
    assert set(project) == {"version", "createTimestamp", "modifyTimestamp", "uri", "lastID", "images"}
    assert project["version"].startswith("0.5") and isinstance(project["createTimestamp"], int)
    assert project["uri"] == (folder / "project.qpproj").absolute().as_uri()
    images = project["images"]
    assert [i["imageName"] for i in images] == ["b.svs", "c.tiff", "a.tiff"]  # flagged, then by blast prevalence
    assert [i["entryID"] for i in images] == [1, 2, 3] and project["lastID"] == 3
    for image in images:
        assert set(image) == {"serverBuilder", "entryID", "randomizedName", "imageName", "description", "metadata"}
        uuid.UUID(image["randomizedName"])
        assert all(isinstance(v, str) for v in image["metadata"].values())  # Map<String, String>
        builder = image["serverBuilder"]
        assert builder["builderType"] == "uri" and builder["args"] == []
        assert Path(builder["uri"].removeprefix("file://")).is_file()
        results = (folder / image["metadata"]["wsi_screen.results"]).resolve()
        assert (results / "detections.geojson").is_file()
    b = images[0]
    assert b["serverBuilder"]["providerClassName"].endswith("OpenslideServerBuilder")
    assert images[1]["serverBuilder"]["providerClassName"].endswith("BioFormatsServerBuilder")
    assert (
        b["description"].startswith("FLAGGED: blasts: CI above 0.2%")
        and "blasts 3.10% (95% CI 1.55%–6.20%) of 812 leukocytes" in b["description"]
    )
    assert b["metadata"]["blast_prevalence"] == "0.0310" and b["metadata"]["flagged"] == "yes" and b["metadata"]["specimen_id"] == "P-b"
    assert b["metadata"]["n_rejected"] == "9" and "; 9 objects rejected as no leukocyte (class Rejected, not counted)" in b["description"]
    assert images[1]["metadata"]["n_rejected"] == "0"  # an older report without the key
    script = (folder / "scripts" / "import_results.groovy").read_text()
    assert "wsi_screen.results" in script and "readObjectsFromGeoJSON" in script and "GZIPInputStream" in script


def test_review_data_is_never_replaced_and_an_empty_night_is_an_error(night, tmp_path, capsys):
    assert main(["qupath", str(night)]) == 0
    (night / "qupath" / "data" / "1").mkdir(parents=True)
    before = (night / "qupath" / "project.qpproj").read_text()
    assert main(["qupath", str(night)]) == 2
    assert "already holds review data" in capsys.readouterr().err
    assert (night / "qupath" / "project.qpproj").read_text() == before
    (tmp_path / "empty").mkdir()
    assert main(["qupath", str(tmp_path / "empty")]) == 2
    assert "no finished slides" in capsys.readouterr().err
