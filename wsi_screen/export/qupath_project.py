"""A QuPath 0.5 project of a night: `OUT/qupath/project.qpproj` listing every screened slide
(flagged first) with its blast figures as description and metadata, and
`scripts/import_results.groovy`, which "Run for project" imports each image's cells, rejected
objects and screened area from `OUT/<slide>/detections.geojson`. QuPath's per-image data
(`data/<id>/data.qpdata`) is Java-serialised, so objects come in through the script.

Every field checked against QuPath's source (github.com/qupath/qupath, 0.5 line):
- DefaultProject.writeProject / loadProject: top-level `version`, `createTimestamp`,
  `modifyTimestamp` (ms since the epoch), `uri` (the project file's URI, read back as the
  "previous URI"), `lastID` (entry ids continue after it), `images` (a list); a file with
  neither `version` nor `lastID` is refused.
- DefaultProject.DefaultProjectImageEntry (Gson fields): `serverBuilder`, `entryID` (long; data
  goes to `data/<entryID>/`), `randomizedName` (a UUID, shown when names are masked),
  `imageName`, `description`, `metadata` (Map<String, String>: values are strings).
- ImageServers.serverBuilderFactory: a RuntimeTypeAdapterFactory on `builderType`, "uri" being
  ImageServerBuilder.DefaultImageServerBuilder with fields `providerClassName`, `uri`, `args`;
  without `metadata` the server reads its own. Provider classes:
  qupath.lib.images.servers.openslide.OpenslideServerBuilder (OpenSlide formats) and
  qupath.lib.images.servers.bioformats.BioFormatsServerBuilder (any other TIFF).
- PathIO.readObjectsFromGeoJSON(InputStream) (used by the script; QuPath >= 0.4 keeps the
  Feature `id` as the object's UUID, which `import-review` matches on).
- ProjectCheckUris: when the project is opened from another place than its stored `uri`, a
  missing image is offered at projectDir.resolve(previousDir.relativize(image)), so slides that
  travel with OUT (same relative place) are found with one "Apply changes".
Opening the project in QuPath was not verified here (QuPath cannot be installed on these machines).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from ..errors import WsiScreenError
from ..night import ScreenedSlide
from ..slide import OPENSLIDE_SUFFIXES
from .outdir import staged_dir

QUPATH_VERSION = "0.5.1"
OPENSLIDE = "qupath.lib.images.servers.openslide.OpenslideServerBuilder"
BIOFORMATS = "qupath.lib.images.servers.bioformats.BioFormatsServerBuilder"
RESULTS_KEY = "wsi_screen.results"  # metadata: the results folder, relative to the project folder

IMPORT_SCRIPT = """\
// wsi_screen: bring this image's screening results into QuPath: cells (classified cell objects with their nuclei),
// rejected objects (class "Rejected") and the screened area (annotation "Screened area").
// Run once with Run > Run for project. Running it again replaces what it imported (same ids).
import qupath.lib.io.PathIO
import java.util.zip.GZIPInputStream

def entry = getProjectEntry()
def folder = entry.getMetadataValue('RESULTS_KEY')
if (folder == null) {
    print "${entry.getImageName()}: not screened by wsi_screen, skipped"
    return
}
def dir = new File(buildFilePath(PROJECT_BASE_DIR, folder))
def file = ['detections.geojson', 'detections.geojson.gz'].collect { new File(dir, it) }.find { it.isFile() }
if (file == null) {
    print "${entry.getImageName()}: no detections.geojson in ${dir}"
    return
}
def objects = file.withInputStream { raw ->
    PathIO.readObjectsFromGeoJSON(file.name.endsWith('.gz') ? new GZIPInputStream(raw) : raw)
}
def ids = objects.collect { it.getID() } as Set
removeObjects(getCurrentHierarchy().getAllObjects(false).findAll { it.getID() in ids }, true)
addObjects(objects)
resolveHierarchy()
print "${entry.getImageName()}: ${objects.size()} objects from ${file}"
""".replace("RESULTS_KEY", RESULTS_KEY)


def write_project(out: Path, slides: list[ScreenedSlide], now_ms: int | None = None) -> Path:
    """OUT/qupath/ (project.qpproj + scripts/), replaced whole; refused once a reviewer has
    saved work in it (data/), which a new project would orphan."""
    folder = Path(out) / "qupath"
    if (folder / "data").exists():
        raise WsiScreenError("the QuPath project already holds review data (data/); move it away to write a new one", folder)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    with staged_dir(folder) as tmp:
        project = project_json(folder / "project.qpproj", slides, now_ms)
        (tmp / "project.qpproj").write_text(json.dumps(project, indent=2, allow_nan=False))
        (tmp / "scripts").mkdir()
        (tmp / "scripts" / "import_results.groovy").write_text(IMPORT_SCRIPT)
    return folder / "project.qpproj"


def project_json(project_file: Path, slides: list[ScreenedSlide], now_ms: int) -> dict:
    images = [image_entry(i + 1, s) for i, s in enumerate(slides)]
    return {
        "version": QUPATH_VERSION,
        "createTimestamp": now_ms,
        "modifyTimestamp": now_ms,
        "uri": Path(project_file).absolute().as_uri(),
        "lastID": len(images),
        "images": images,
    }


def image_entry(entry_id: int, s: ScreenedSlide) -> dict:
    low, high = s.blast_ci95
    figures = f"blasts {s.blast_prevalence:.2%} (95% CI {low:.2%}–{high:.2%}) of {s.n_leukocytes} leukocytes; {s.needs_review} to review"
    figures += f"; {s.n_rejected} objects rejected as no leukocyte (class Rejected, not counted)"
    description = ("FLAGGED: " + "; ".join(s.flags) if s.flagged else "not flagged") + f". {figures}. Research use only."
    provider = OPENSLIDE if s.slide.suffix.lower() in OPENSLIDE_SUFFIXES else BIOFORMATS
    return {
        "serverBuilder": {"builderType": "uri", "providerClassName": provider, "uri": s.slide.absolute().as_uri(), "args": []},
        "entryID": entry_id,
        "randomizedName": str(uuid.uuid5(uuid.NAMESPACE_URL, s.slide.absolute().as_uri())),
        "imageName": s.slide.name,
        "description": description,
        "metadata": {
            "review_order": f"{entry_id:03d}",
            "flagged": "yes" if s.flagged else "no",
            "specimen_id": s.specimen_id,
            "blast_prevalence": f"{s.blast_prevalence:.4f}",
            "blast_ci95": f"{low:.4f}-{high:.4f}",
            "n_leukocytes": str(s.n_leukocytes),
            "n_rejected": str(s.n_rejected),
            "needs_review": str(s.needs_review),
            RESULTS_KEY: f"../{s.results}",
        },
    }
