"""Overnight batch screening on dask.distributed: slides are the unit of distribution, each
screened exactly as `screen` does; tiles stay parallel inside a slide (the slide task secedes from
its worker's pool while it waits on them). Resumable: a slide whose folder holds a completion
record matching the input file and the config is skipped; one bad slide never stops the night."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from .config import Config
from .errors import WsiScreenError
from .export.html import render
from .records import SlideSummary
from .screen import ScreenOptions
from .slide import FIELD_IMAGE_SUFFIXES, OPENSLIDE_SUFFIXES, TIFF_SUFFIXES

SLIDE_SUFFIXES = TIFF_SUFFIXES + OPENSLIDE_SUFFIXES + FIELD_IMAGE_SUFFIXES
SUMMARY_COLUMNS = [
    "slide", "status", "error", "n_leukocytes", "blast_prevalence", "blast_ci_low", "blast_ci_high", "flag", "needs_review",
    "qc_warnings", "runtime_s",
]  # fmt: skip


def collect_slides(inputs: list[Path]) -> list[Path]:
    """Slide files given directly, found in folders (recursively), or listed in text files."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES)
        elif item.suffix.lower() in (".txt", ".list"):
            try:
                lines = item.read_text().splitlines()
            except OSError as exc:
                raise WsiScreenError(f"cannot read slide list ({exc.strerror})", item) from None
            found += [Path(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
        else:
            found.append(item)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise WsiScreenError("no slides found in the inputs")
    return unique


def output_names(slides: list[Path]) -> dict[Path, str]:
    """OUT/<stem>; stems that collide get a stable suffix from the full path."""
    stems: dict[str, int] = {}
    for p in slides:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    return {p: p.stem if stems[p.stem] == 1 else f"{p.stem}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}" for p in slides}


def fingerprint(path: Path, config: Config) -> dict:
    """What makes a finished result still valid: the same file and the same config."""
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return {
        "input": str(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": digest.hexdigest(),
        "config_sha256": config.sha256(),
    }


@dataclass
class SlideRow:
    slide: str
    status: str
    error: str = ""
    n_leukocytes: int | None = None
    blast_prevalence: float | None = None
    blast_ci_low: float | None = None
    blast_ci_high: float | None = None
    flag: bool | None = None
    needs_review: int | None = None
    qc_warnings: int | None = None
    runtime_s: float | None = None
    skipped: bool = False

    @classmethod
    def from_summary(cls, slide: str, s: SlideSummary, skipped: bool = False) -> "SlideRow":
        b = s.blast
        return cls(
            slide, "ok", "", s.n_leukocytes, b.prevalence, b.ci95[0], b.ci95[1], bool(s.flags), s.needs_review, len(s.qc.warnings),
            s.provenance.runtime_s, skipped,
        )  # fmt: skip


def screen_task(path: str, out: str, name: str, config: Config, options: ScreenOptions, record: dict) -> dict:
    """One slide on a worker; every expected and unexpected failure becomes a failed row. The
    completion record is written last, once the slide's folder is whole."""
    from distributed import worker_client

    from .screen import screen_slide

    t0 = time.perf_counter()
    try:
        with worker_client() as client:  # secedes: this task waits on its own tile tasks
            result = screen_slide(Path(path), Path(out), config, replace(options, progress=False), client=client, out_name=name)
        _atomic_write(result.out_dir / "completed.json", json.dumps(record, indent=1))
        return asdict(SlideRow.from_summary(path, result.summary))
    except Exception as exc:  # noqa: BLE001 - one bad slide never stops the night
        message = str(exc) if isinstance(exc, WsiScreenError) else f"{exc.__class__.__name__}: {exc}"
        first_line = message.splitlines()[0] if message else exc.__class__.__name__
        return asdict(SlideRow(path, "failed", first_line, runtime_s=time.perf_counter() - t0))


def run_batch(
    inputs: list[Path], out: Path, config: Config, options: ScreenOptions, retry_failed: bool = False, client=None
) -> list[SlideRow]:
    from distributed import as_completed

    from .parallel import dask_client

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.partial-*"):  # left by an interrupted run: restart those slides from clean
        shutil.rmtree(stale, ignore_errors=True)
    slides = collect_slides(inputs)
    names = output_names(slides)
    failed_dir = out / ".failed"
    rows: dict[Path, SlideRow] = {}
    todo = []
    for path in slides:
        if not path.is_file():
            rows[path] = SlideRow(str(path), "failed", f"{path}: file not found")
            continue
        record = fingerprint(path, config)
        done = out / names[path] / "completed.json"
        failed = failed_dir / f"{names[path]}.json"
        if done.is_file() and json.loads(done.read_text()) == record:
            summary = SlideSummary.from_json((out / names[path] / "report.json").read_text())
            rows[path] = SlideRow.from_summary(str(path), summary, skipped=True)
        elif failed.is_file() and not retry_failed and json.loads(failed.read_text()).get("record") == record:
            rows[path] = SlideRow(**{**json.loads(failed.read_text())["row"], "skipped": True})
        else:
            todo.append((path, record))
    started = time.time()
    _write_summaries(out, slides, rows, config, started)
    if not todo:
        return [rows[p] for p in slides]
    from contextlib import nullcontext

    with nullcontext(client) if client is not None else dask_client(options.scheduler, config.dask, options.workers) as client:
        futures = {
            client.submit(screen_task, str(p), str(out), names[p], config, options, rec, pure=False, key=f"screen-{names[p]}"): (p, rec)
            for p, rec in todo
        }
        bar = tqdm(total=len(slides), initial=len(rows), unit="slide", desc="screening", disable=not options.progress)
        cells, t0 = 0, time.perf_counter()
        for future in as_completed(futures):
            path, record = futures[future]
            row = SlideRow(**future.result())
            rows[path] = row
            failed = failed_dir / f"{names[path]}.json"
            if row.status == "failed":
                failed_dir.mkdir(exist_ok=True)
                _atomic_write(failed, json.dumps({"record": record, "row": asdict(row)}, indent=1))
            elif failed.exists():
                failed.unlink()
            cells += row.n_leukocytes or 0
            n_failed = sum(r.status == "failed" for r in rows.values())
            speed = f"{cells / (time.perf_counter() - t0):.1f}"
            bar.set_postfix(done=len(rows) - n_failed, failed=n_failed, remaining=len(slides) - len(rows), cells_per_s=speed)
            bar.update(1)
            _write_summaries(out, slides, rows, config, started)
        bar.close()
    return [rows[p] for p in slides]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def _write_summaries(out: Path, slides: list[Path], rows: dict[Path, SlideRow], config: Config, started: float) -> None:
    """summary.csv / summary.html (flagged slides first) and run.json, rewritten after every slide."""
    done = [rows[p] for p in slides if p in rows]
    frame = pd.DataFrame([asdict(r) for r in done], columns=SUMMARY_COLUMNS + ["skipped"])[SUMMARY_COLUMNS]
    if len(frame):
        order = (~frame["flag"].fillna(False).astype(bool)).astype(int) + 2 * (frame["status"] != "ok")  # flagged, ok, failed
        frame = frame.assign(_order=order).sort_values(["_order", "slide"], kind="stable").drop(columns="_order")
    _atomic_write(out / "summary.csv", frame.to_csv(index=False))
    rows_shown = frame.astype(object).where(frame.notna(), "").to_dict("records")
    _atomic_write(out / "summary.html", render("summary.html", done=len(done), total=len(slides), columns=SUMMARY_COLUMNS, rows=rows_shown))
    from .provenance import model_checksums, software_versions

    run = {
        "software": software_versions(),
        "config_sha256": config.sha256(),
        "models": model_checksums(config),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "complete": len(rows) == len(slides),
        "slides": [{"slide": str(p), "status": rows[p].status if p in rows else "pending", "error": rows[p].error if p in rows else ""}
                   for p in slides],  # fmt: skip
    }
    _atomic_write(out / "run.json", json.dumps(run, indent=1))
