"""A finished slide's record is checked from size and mtime alone; content is hashed only when the
mtime moved and the size did not."""

from __future__ import annotations

import os

import pytest

from wsi_screen import resume
from wsi_screen.resume import file_record, still_valid

SETTINGS = {"config_sha256": "c" * 64, "specimen_id": "S-1", "aoi": "auto", "aoi_sha256": None}


@pytest.fixture
def hashed(monkeypatch):
    """Counts the files resume hashes."""
    calls = []
    real = resume.sha256
    monkeypatch.setattr(resume, "sha256", lambda p: calls.append(p) or real(p))
    return calls


def test_same_size_and_mtime_is_valid_without_reading_the_file(tmp_path, hashed):
    slide = tmp_path / "s.tiff"
    slide.write_bytes(b"a" * 1000)
    record = file_record(slide, SETTINGS)
    hashed.clear()
    stat = slide.stat()
    slide.write_bytes(b"b" * 1000)  # new content, same size, mtime put back: trusted unread
    os.utime(slide, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert still_valid(record, slide, SETTINGS) and hashed == []


def test_moved_mtime_hashes_and_compares_content(tmp_path, hashed):
    slide = tmp_path / "s.tiff"
    slide.write_bytes(b"a" * 1000)
    record = file_record(slide, SETTINGS)
    hashed.clear()
    os.utime(slide, ns=(1, 10**18))  # touched, content unchanged
    assert still_valid(record, slide, SETTINGS) and hashed == [slide]
    slide.write_bytes(b"b" * 1000)
    assert not still_valid(record, slide, SETTINGS) and len(hashed) == 2


def test_other_size_or_settings_is_invalid_without_hashing(tmp_path, hashed):
    slide = tmp_path / "s.tiff"
    slide.write_bytes(b"a" * 1000)
    record = file_record(slide, SETTINGS)
    hashed.clear()
    assert not still_valid(record, slide, {**SETTINGS, "config_sha256": "d" * 64})
    assert not still_valid(record, slide, {**SETTINGS, "specimen_id": "S-2"})
    assert not still_valid(None, slide, SETTINGS)
    slide.write_bytes(b"a" * 1001)
    assert not still_valid(record, slide, SETTINGS) and hashed == []
