"""Reviewed labels back in: a GeoJSON the reviewer exported from QuPath (>= 0.4, which keeps each
object's UUID as its Feature `id`) is matched to the screened cells by those ids.

What each reviewer action means, per cell of the screen:
- kept or reclassified: the reviewer's class (one of the 15 codes, by name or code);
- reclassified to "Rejected": REJ, not a leukocyte; a model-"Rejected" object given a leukocyte
  class becomes that class;
- deleted (its id is absent): REJ, the reviewer removed it as no leukocyte (an export holding
  fewer than half of the cells is refused as a partial export, not read as mass deletion);
- left unclassified: no label ("").
Objects with ids the screen never made are cells the reviewer added (detector misses): kept
apart, with their centroid and class, outside every agreement figure. Annotations (the screened
area) are ignored. Agreement is computed on what the reviewer saw: the model's label is REJ
where the reject output rejected the object (`records.is_rejected`), else its argmax class; the
blast test is the count's rule (a counted cell with its argmax in a blast class) against the
reviewer's blast classes."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from shapely.geometry import shape

from .classes import BLAST, CLASS_CODES, CLASS_NAMES
from .errors import WsiScreenError

REJ = "REJ"
PAPER_HUMAN_KAPPA = (0.84, 0.87)  # Matek et al. 2019, two re-annotators vs the original labels
_BY_NAME = {name.lower(): code for code, name in CLASS_NAMES.items()} | {code.lower(): code for code in CLASS_CODES} | {"rejected": REJ}


@dataclass(frozen=True)
class Review:
    """The reviewer's label per screened cell (REJ: no leukocyte, "": unlabelled), how each was
    reached, and the cells the reviewer added."""

    labels: np.ndarray  # per cell id, U3
    actions: np.ndarray  # kept | reclassified | deleted | unlabelled
    added: tuple[dict, ...]  # {"id", "x", "y", "class"}


@dataclass(frozen=True)
class Agreement:
    n_cells: int
    kappa: float
    blast_positive: int  # cells the reviewer calls blasts
    blast_sensitivity: float | None  # None without reviewer blasts
    blast_specificity: float | None

    def line(self) -> str:
        se = "n/a" if self.blast_sensitivity is None else f"{self.blast_sensitivity:.1%}"
        sp = "n/a" if self.blast_specificity is None else f"{self.blast_specificity:.1%}"
        human = " / ".join(f"{k:.2f}" for k in PAPER_HUMAN_KAPPA)
        return (
            f"Cohen's kappa {self.kappa:.3f} over {self.n_cells} reviewed cells (the paper's human re-annotators: {human}); "
            f"blast test against the reviewer: sensitivity {se} ({self.blast_positive} reviewer blasts), specificity {sp}"
        )


def read_review(path: Path) -> list[dict]:
    """The Features of a QuPath GeoJSON export (a FeatureCollection or a bare list)."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError, EOFError) as exc:
        raise WsiScreenError(f"not a readable GeoJSON export ({exc.__class__.__name__})", path) from None
    features = data.get("features") if isinstance(data, dict) else data
    if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
        raise WsiScreenError("not a GeoJSON FeatureCollection or list of Features", path)
    return features


def match_review(features: list[dict], ids: dict[str, int], n_cells: int, path: Path) -> Review:
    """Labels per cell from the reviewer's Features; `ids` maps each screened cell's UUID to its id."""
    labels, actions = np.full(n_cells, REJ, "U3"), np.full(n_cells, "deleted", "U12")
    seen, added = set(), []
    for k, f in enumerate(features):
        props = f.get("properties") or {}
        if props.get("objectType", "annotation") not in ("detection", "cell"):
            continue
        code = _class_code(props.get("classification"), path, k)
        fid = str(f.get("id", ""))
        if fid not in ids:
            added.append(_added(f, fid, code, path, k))
            continue
        i = ids[fid]
        seen.add(i)
        labels[i], actions[i] = (code, "kept") if code else ("", "unlabelled")
    if n_cells and len(seen) < n_cells / 2:
        raise WsiScreenError(f"holds only {len(seen)} of the {n_cells} screened cells: export all objects, not a selection", path)
    return Review(labels, actions, tuple(added))


def with_reclassified(review: Review, model_labels: np.ndarray) -> Review:
    """Marks kept cells whose label differs from the model's as reclassified."""
    changed = (review.actions == "kept") & (review.labels != model_labels)
    return Review(review.labels, np.where(changed, "reclassified", review.actions).astype("U12"), review.added)


def agreement(review: Review, model_labels: np.ndarray, model_blast: np.ndarray) -> Agreement:
    """κ between reviewer and model over the labelled cells, and the blast test's rates."""
    from sklearn.metrics import cohen_kappa_score

    done = review.labels != ""
    truth, call = review.labels[done], model_labels[done]
    blast_truth, blast_call = np.isin(truth, BLAST), model_blast[done]
    pos, neg = blast_truth.sum(), (~blast_truth).sum()
    return Agreement(
        int(done.sum()),
        float(cohen_kappa_score(truth, call)) if done.any() else float("nan"),
        int(pos),
        float((blast_call & blast_truth).sum() / pos) if pos else None,
        float((~blast_call & ~blast_truth).sum() / neg) if neg else None,
    )


def _class_code(classification, path: Path, k: int) -> str:
    if not classification:
        return ""
    name = classification.get("name") or ": ".join(classification.get("names") or [])
    try:
        return _BY_NAME[str(name).strip().lower()]
    except KeyError:
        raise WsiScreenError(f"feature {k}: class {name!r} is none of the 15 classes or 'Rejected'", path) from None


def _added(f: dict, fid: str, code: str, path: Path, k: int) -> dict:
    try:
        c = shape(f["geometry"]).centroid
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WsiScreenError(f"feature {k}: added object without a readable geometry ({exc.__class__.__name__})", path) from None
    return {"id": fid, "x": float(c.x), "y": float(c.y), "class": code}
