"""Specimen ids and AOIs per slide: one id never labels a night, a CSV maps many, an AOI file
beside a slide is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsi_screen.cli import main
from wsi_screen.errors import WsiScreenError
from wsi_screen.specimens import SlideSpec, slide_specs


@pytest.fixture
def night(tmp_path) -> list[Path]:
    (tmp_path / "scans").mkdir()
    slides = [(tmp_path / "scans" / f"s{i}.tiff") for i in range(3)]
    for s in slides:
        s.write_bytes(b"x")
    return [s.resolve() for s in slides]


def test_csv_maps_ids_and_aois_and_a_file_beside_the_slide_is_found(night, tmp_path):
    (night[1].parent / "s1.aoi.geojson").write_text("{}")
    (tmp_path / "drawn.geojson").write_text("{}")
    csv = tmp_path / "specimens.csv"
    csv.write_text("slide,specimen_id,aoi\nscans/s0.tiff,P-001,drawn.geojson\ns1.tiff,P-002,\n")
    specs = slide_specs(night, None, "auto", csv)
    assert specs[night[0]] == SlideSpec("P-001", str((tmp_path / "drawn.geojson").resolve()))
    assert specs[night[1]] == SlideSpec("P-002", str(night[1].parent / "s1.aoi.geojson"))
    assert specs[night[2]] == SlideSpec(None, "auto")  # unmapped: the stem is shown, --aoi applies


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("slide,specimen\ns0.tiff,P\n", "slide,specimen_id"),
        ("slide,specimen_id\ns9.tiff,P\n", "line 2: slide 's9.tiff' is not among the inputs"),
        ("slide,specimen_id\ns0.tiff,P\ns1.tiff,P\n", "line 3: specimen_id 'P' already given on line 2"),
        ("slide,specimen_id\ns0.tiff,\n", "line 2: empty specimen_id"),
        ("slide,specimen_id\ns0.tiff,P\ns0.tiff,Q\n", "line 3: slide 's0.tiff' listed twice"),
        ("slide,specimen_id,aoi\ns0.tiff,P,nowhere.geojson\n", "line 2: AOI file 'nowhere.geojson' not found"),
    ],
)
def test_bad_mapping_is_one_error_naming_the_file_and_line(night, tmp_path, text, fragment):
    csv = tmp_path / "m.csv"
    csv.write_text(text)
    with pytest.raises(WsiScreenError, match=fragment) as info:
        slide_specs(night, None, "auto", csv)
    assert str(info.value).startswith(str(csv))


def test_one_specimen_id_for_several_slides_fails_before_writing(night, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(night[0].parent), "-o", str(out), "--specimen-id", "P-7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would label all 3 slides as one specimen" in err[0]
    assert not out.exists()
    assert slide_specs(night[:1], "P-7", "full", None) == {night[0]: SlideSpec("P-7", "full")}  # one slide: fine
