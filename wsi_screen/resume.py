"""Whether a slide's stored record (completion or failure) still holds, read from the file's size
and mtime without opening it: a night of a hundred 1 GB scans must not be hashed before work
starts. The content is hashed only when the size matches and the mtime does not (a copy, a
touch); a new record is hashed by the slide's own task, on its worker."""

from __future__ import annotations

from pathlib import Path

from .checksum import sha256


def file_record(path: Path, settings: dict) -> dict:
    """What makes a result valid: this file's size, mtime and content, and `settings` (config hash,
    specimen, AOI). The stat is taken first, so a file changed while hashing is hashed again later."""
    stat = Path(path).stat()
    return {"input": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256(path), **settings}


def still_valid(record: dict | None, path: Path, settings: dict) -> bool:
    """True when `record` was made from this file (by size and mtime, or by content when only the
    mtime moved) with these `settings`."""
    if not isinstance(record, dict) or record.get("input") != str(path) or any(record.get(k) != v for k, v in settings.items()):
        return False
    stat = Path(path).stat()
    if record.get("size") != stat.st_size:
        return False
    return record.get("mtime_ns") == stat.st_mtime_ns or record.get("sha256") == sha256(path)
