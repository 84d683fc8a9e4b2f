"""Inter-observer agreement in the Matek et al. 2019 annotations.dat: each re-annotation against
the original label, over the images that re-annotator labelled (not `nan`) with a class (not `UNC`).
The original label is the reference for the blast and atypical tests. This reproduces the paper's
κ 0.84 / 0.87 and its test sensitivities/specificities, the human bar for the classifier, and
splits each re-annotator's blast calls on non-blasts by the original class: how often experts
themselves take a monocyte or a promyelocyte for a blast, the bar for the classifier's own
false blasts on those classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import cohen_kappa_score

from .cell_images import read_annotations
from .classes import ATYPICAL, BLAST
from .metrics import screening_test


def human_agreement(path: str | Path) -> dict:
    """{'reann1': {...}, 'reann2': {...}}, each with n_images, n_unc_excluded, kappa, blast_test,
    atypical_test (sensitivity/specificity of the re-annotator's call vs the original) and
    blast_calls_by_class ({original non-blast class: {'n', 'called_blast'}})."""
    ann = read_annotations(path)
    out = {}
    for col in ("reann1", "reann2"):
        done = ann[ann[col].notna()]
        rows = done[done[col] != "UNC"]
        truth, call = rows["original"].to_numpy(), rows[col].to_numpy()
        tests = {}
        for name, codes in (("blast_test", BLAST), ("atypical_test", ATYPICAL)):
            t = screening_test(np.isin(truth, codes), np.isin(call, codes).astype(float))
            tests[name] = {k: t[k] for k in ("n_positive", "n_negative", "sensitivity", "specificity")}
        called = np.isin(call, BLAST)
        by_class = {
            str(c): {"n": int((truth == c).sum()), "called_blast": int(called[truth == c].sum())} for c in sorted(set(truth) - set(BLAST))
        }
        out[col] = {
            "n_images": int(len(rows)),
            "n_unc_excluded": int(len(done) - len(rows)),
            "kappa": float(cohen_kappa_score(truth, call)) if len(rows) else float("nan"),
            **tests,
            "blast_calls_by_class": by_class,
        }
    return out


def expected_blast_calls(by_class: dict, mix: dict[str, int], min_cells: int = 3) -> tuple[float, list[str]]:
    """The share of a mix of non-blast cells ({class: cells}) a re-annotator would call blasts at
    their own per-class rates (`blast_calls_by_class`), over the classes they re-annotated at
    least `min_cells` of; and those classes."""
    rated = {c: n for c, n in mix.items() if by_class.get(c, {}).get("n", 0) >= min_cells}
    calls = sum(n * by_class[c]["called_blast"] / by_class[c]["n"] for c, n in rated.items())
    return (calls / sum(rated.values()) if rated else float("nan")), sorted(rated)


def format_agreement(result: dict) -> str:
    """The paper's sentence, per re-annotation, then its blast calls on each non-blast class."""
    lines = []
    for col, r in result.items():
        b, a = r["blast_test"], r["atypical_test"]
        calls = ", ".join(f"{c} {v['called_blast']}/{v['n']}" for c, v in r["blast_calls_by_class"].items() if v["called_blast"])
        lines.append(
            f"{col}: {r['n_images']} images ({r['n_unc_excluded']} UNC excluded), Cohen's kappa {r['kappa']:.2f}; "
            f"blast sensitivity {100 * b['sensitivity']:.1f}% specificity {100 * b['specificity']:.1f}%; "
            f"atypical sensitivity {100 * a['sensitivity']:.1f}% specificity {100 * a['specificity']:.1f}%; "
            f"non-blasts called blasts: {calls or 'none'}"
        )
    return "\n".join(lines)
