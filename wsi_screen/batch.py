"""Overnight batch screening on dask.distributed: slides are the unit of distribution, each
screened exactly as `screen` does; tiles stay parallel inside a slide (the slide task secedes from
its worker's pool while it waits on them). Because a seceded task frees its slot, the cluster
alone would start every slide at once; at most `slides_in_flight` are submitted at a time.
Resumable: a slide whose completion record still holds (see `resume`) is skipped; one bad slide
never stops the night, and its traceback is kept in OUT/<name>.error.txt."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from .checksum import sha256
from .config import Config
from .errors import WsiScreenError
from .export.html import render
from .records import SlideSummary
from .resume import file_record, still_valid
from .screen import ScreenOptions
from .slide import FIELD_IMAGE_SUFFIXES, OPENSLIDE_SUFFIXES, TIFF_SUFFIXES
from .specimens import SlideSpec, slide_specs

SLIDE_SUFFIXES = TIFF_SUFFIXES + OPENSLIDE_SUFFIXES + FIELD_IMAGE_SUFFIXES
SUMMARY_COLUMNS = [
    "slide",
    "status",
    "error",
    "n_leukocytes",
    "n_rejected",
    "blast_prevalence",
    "blast_ci_low",
    "blast_ci_high",
    "flag",
    "needs_review",
    "qc_warnings",
    "outside_training_colours",
    "runtime_s",
]


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


def settings(config: Config, spec: SlideSpec) -> dict:
    """Everything besides the slide file that a result depends on (an AOI file by its content)."""
    aoi = Path(spec.aoi)
    aoi_sha256 = sha256(aoi) if aoi.is_file() else None
    return {"config_sha256": config.sha256(), "specimen_id": spec.specimen_id, "aoi": spec.aoi, "aoi_sha256": aoi_sha256}


def default_slides_in_flight(client) -> int:
    """One slide per 8 worker threads, at least one: a single slide's tile queue (4 tasks a
    worker) already keeps the cluster busy, and each further slide costs a loaded classifier and
    an open slide; a few more only fill the serial stages (AOI, classification, report)."""
    threads = sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values())
    return max(1, threads // 8)


@dataclass
class SlideRow:
    slide: str
    status: str
    error: str = ""
    n_leukocytes: int | None = None
    n_rejected: int | None = None  # objects the reject output claimed: in no count
    blast_prevalence: float | None = None
    blast_ci_low: float | None = None
    blast_ci_high: float | None = None
    flag: bool | None = None
    needs_review: int | None = None
    qc_warnings: int | None = None
    outside_training_colours: float | None = None  # share of the leukocytes: the classifier is unvalidated on this stain
    runtime_s: float | None = None
    skipped: bool = False
    started: float | None = None  # Unix time on the worker, for the overlap check in run.json
    ended: float | None = None
    error_file: str = ""

    @classmethod
    def from_summary(cls, slide: str, s: SlideSummary, skipped: bool = False) -> "SlideRow":
        b = s.blast
        return cls(
            slide,
            "ok",
            "",
            s.n_leukocytes,
            s.n_rejected,
            b.prevalence,
            b.ci95[0],
            b.ci95[1],
            bool(s.flags),
            s.needs_review,
            len(s.qc.warnings),
            s.qc.outside_training_colours,
            s.provenance.runtime_s,
            skipped,
        )


def screen_task(path: str, out: str, name: str, config: Config, options: ScreenOptions, wanted: dict) -> dict:
    """One slide on a worker; every expected and unexpected failure becomes a failed row, with
    the full traceback in OUT/<name>.error.txt. The completion record (the slide file as it was
    when the task started, and `wanted`) is written last, once the slide's folder is whole."""
    from distributed import worker_client

    from .screen import screen_slide

    started, t0 = time.time(), time.perf_counter()
    try:
        record = file_record(Path(path), wanted)
        with worker_client() as client:  # secedes: this task waits on its own tile tasks
            result = screen_slide(Path(path), Path(out), config, replace(options, progress=False), client=client, out_name=name)
        _atomic_write(result.out_dir / "completed.json", json.dumps(record, indent=1))
        return asdict(replace(SlideRow.from_summary(path, result.summary), started=started, ended=time.time()))
    except Exception as exc:  # noqa: BLE001 - one bad slide never stops the night
        message = str(exc) if isinstance(exc, WsiScreenError) else f"{exc.__class__.__name__}: {exc}"
        error_file = Path(out) / f"{name}.error.txt"
        _atomic_write(error_file, traceback.format_exc())
        first = message.splitlines()[0] if message else exc.__class__.__name__
        row = SlideRow(
            path, "failed", first, runtime_s=time.perf_counter() - t0, started=started, ended=time.time(), error_file=error_file.name
        )
        return asdict(row)


def run_batch(
    inputs: list[Path],
    out: Path,
    config: Config,
    options: ScreenOptions,
    retry_failed: bool = False,
    client=None,
    specimens: Path | None = None,
    slides_in_flight: int | None = None,
) -> list[SlideRow]:
    """Screen every slide of `inputs` into `out`; `specimens` is a `slide,specimen_id[,aoi]` CSV."""
    from contextlib import nullcontext

    from .parallel import dask_client

    out = Path(out)
    slides = collect_slides(inputs)
    specs = slide_specs(slides, options.specimen_id, options.aoi, specimens)  # inconsistent ids: fail before writing anything
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.partial-*"):  # left by an interrupted run: restart those slides from clean
        shutil.rmtree(stale, ignore_errors=True)
    names = output_names(slides)
    failed_dir = out / ".failed"
    rows: dict[Path, SlideRow] = {}
    todo = []
    for path in slides:
        if not path.is_file():
            rows[path] = SlideRow(str(path), "failed", f"{path}: file not found")
            continue
        wanted = settings(config, specs[path])
        done = out / names[path] / "completed.json"
        failed = failed_dir / f"{names[path]}.json"
        if done.is_file() and still_valid(json.loads(done.read_text()), path, wanted):
            summary = SlideSummary.from_json((out / names[path] / "report.json").read_text())
            rows[path] = SlideRow.from_summary(str(path), summary, skipped=True)
        elif failed.is_file() and not retry_failed and still_valid(json.loads(failed.read_text()).get("record"), path, wanted):
            rows[path] = SlideRow(**{**json.loads(failed.read_text())["row"], "skipped": True})
        else:
            todo.append((path, wanted))
    started = time.time()
    _write_summaries(out, slides, rows, config, started)
    if not todo:
        return [rows[p] for p in slides]
    with nullcontext(client) if client is not None else dask_client(options.scheduler, config.dask, options.workers) as client:
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)
        cap = slides_in_flight or default_slides_in_flight(client)
        wanted = dict(todo)
        for path, row in _screen_all(client, todo, out, names, config, options, specs, cap):
            rows[path] = row
            _keep_failure(out, failed_dir / f"{names[path]}.json", row, wanted[path])
            _write_summaries(out, slides, rows, config, started)
    return [rows[p] for p in slides]


def _screen_all(client, todo, out: Path, names, config: Config, options: ScreenOptions, specs, cap: int):
    """(slide, row) as slides finish, with at most `cap` slide tasks submitted at any time. Task
    keys carry this run's id, so two runs on one scheduler never share a result."""
    from distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    queue = iter(todo)
    pending, futures = as_completed(), {}

    def submit() -> None:
        item = next(queue, None)
        if item is not None:
            path, wanted = item
            slide_options = replace(options, specimen_id=specs[path].specimen_id, aoi=specs[path].aoi)
            future = client.submit(
                screen_task,
                str(path),
                str(out),
                names[path],
                config,
                slide_options,
                wanted,
                pure=False,
                key=f"screen-{names[path]}-{run_id}",
            )
            futures[future] = path
            pending.add(future)

    for _ in range(cap):
        submit()
    bar = tqdm(total=len(todo), unit="slide", desc="screening", disable=not options.progress)
    cells, n_failed, t0 = 0, 0, time.perf_counter()
    for future in pending:
        row = SlideRow(**future.result())
        submit()
        cells += row.n_leukocytes or 0
        n_failed += row.status == "failed"
        bar.set_postfix(failed=n_failed, cells_per_s=f"{cells / (time.perf_counter() - t0):.1f}")
        bar.update(1)
        yield futures.pop(future), row
    bar.close()


def _keep_failure(out: Path, failed: Path, row: SlideRow, wanted: dict) -> None:
    """A failed slide's record (skipped next time unless the slide or settings change, or
    --retry-failed); a slide that now succeeded loses its old failure files."""
    if row.status == "failed":
        failed.parent.mkdir(exist_ok=True)
        stat = Path(row.slide).stat() if Path(row.slide).is_file() else None
        record = {"input": row.slide, "size": stat and stat.st_size, "mtime_ns": stat and stat.st_mtime_ns, "sha256": None, **wanted}
        _atomic_write(failed, json.dumps({"record": record, "row": asdict(row)}, indent=1))
        return
    failed.unlink(missing_ok=True)
    (out / f"{failed.stem}.error.txt").unlink(missing_ok=True)


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
        "slides": [_run_entry(p, rows.get(p)) for p in slides],
    }
    _atomic_write(out / "run.json", json.dumps(run, indent=1))


def _run_entry(path: Path, row: SlideRow | None) -> dict:
    if row is None:
        return {"slide": str(path), "status": "pending", "error": ""}
    entry = {
        "slide": str(path),
        "status": row.status,
        "error": row.error,
        "skipped": row.skipped,
        "started": row.started,
        "ended": row.ended,
    }
    return entry | ({"error_file": row.error_file} if row.error_file else {})
