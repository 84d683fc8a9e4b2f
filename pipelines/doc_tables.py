"""Figures in the docs that pipelines and benchmarks measure, rendered from the JSON they write, never
copied by hand. A generated block sits between two comments in a Markdown file,

    <!-- generated:NAME -->
    ...rendered by RENDERERS[NAME]...
    <!-- /generated:NAME -->

and everything outside the blocks is prose that no run touches. Whole generated pages (GENERATED_PAGES,
e.g. docs/slide_agreement.md) are rendered entire. After a pipeline rewrites its JSON (a new model card,
a new detector evaluation), one command brings every page up to date:

    PYTHONPATH=$PWD python pipelines/doc_tables.py           # rewrite what is stale
    PYTHONPATH=$PWD python pipelines/doc_tables.py --check   # list stale pages, exit 1 (tests/test_docs.py)

Sources: wsi_screen/weights/classifier.json (the model card, written by
pipelines/train_classifier.py), docs/detector/detector_eval.json (pipelines/evaluate_detector.py),
docs/detector/outlines.json (pipelines/evaluate_outlines.py), docs/detector/loso.json
(pipelines/detector_loso.py), docs/detector/detector_eval_second_look.json (the same with --second-
look), docs/crop_scale.json (pipelines/measure_crop_scale.py), docs/other_lab.json
(pipelines/evaluate_other_lab.py), docs/slide_agreement.json (pipelines/slide_agreement.py),
docs/statistics/interval_coverage.json (benchmarks/interval_coverage.py); the README's settings
table comes from configs/default.yaml. Only the standard library and PyYAML are imported: the check
runs in a moment."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "wsi_screen" / "weights" / "classifier.json"
DETECTOR_EVAL = ROOT / "docs" / "detector" / "detector_eval.json"
OUTLINES = ROOT / "docs" / "detector" / "outlines.json"
LOSO = ROOT / "docs" / "detector" / "loso.json"
SECOND_LOOK = ROOT / "docs" / "detector" / "detector_eval_second_look.json"
CROP_SCALE = ROOT / "docs" / "crop_scale.json"
OTHER_LAB = ROOT / "docs" / "other_lab.json"
SLIDE_AGREEMENT = ROOT / "docs" / "slide_agreement.json"
INTERVAL_COVERAGE = ROOT / "docs" / "statistics" / "interval_coverage.json"
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
# A block's comments stand on lines of their own (a comment quoted inside a line of prose is no block).
BLOCK = re.compile(r"^(<!-- generated:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)^(<!-- /generated:(?P=name) -->)$", re.S | re.M)
OPENING = re.compile(r"^<!-- generated:([\w.-]+) -->$", re.M)


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def pct(v, digits: int = 1) -> str:
    return "–" if _missing(v) else f"{100 * v:.{digits}f} %"


def num(v, digits: int = 3) -> str:
    return "–" if _missing(v) else f"{v:.{digits}f}"


def prose(text: str, indent: str = "") -> str:
    """A paragraph wrapped at 100 characters (tables are the only long lines a generated block has)."""
    return textwrap.fill(text, 100, initial_indent=indent, subsequent_indent=" " * len(indent), break_on_hyphens=False)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


# ---- the classifier's model card -------------------------------------------------------------

CARD_FIGURES = {
    "blast_auc": "blast AUC (MYO+MOB)",
    "blast_auc_deepapl": "blast AUC within DeepAPL",
    "atypical_auc": "atypical AUC",
    "mean_sensitivity": "mean per-class sensitivity",
    "false_blast_rate_pbc": "false-blast rate, PBC normal cells",
    "false_blast_rate_deepapl": "false-blast rate, DeepAPL non-blasts",
    "stain_transfer_class_change_pbc": "PBC normal cells changing class in DeepAPL's stain",
    "blast_flag_rate_0.005_locked": "2000-cell smears flagged, 0.5 % blasts",
    "blast_flag_rate_0.0_locked": "2000-cell smears flagged, 0 % blasts",
    "blast_call_sensitivity": "blast-call sensitivity",
}
WHERE = {"measured": "held-out split", "out_of_fold": "out of fold", "locked": "locked set"}


def card_value(key: str, v) -> str:
    """A card figure as the docs print it: rates as percentages, AUCs to three decimals."""
    if any(w in key for w in ("rate", "change", "fraction")):
        return pct(v)
    return num(v, 3 if "auc" in key or "accuracy" in key else 2)


def _goal(key: str, target: str) -> str:
    """The bound as the card writes it (">= 0.98" as "≥ 0.98"), a rate's as a percentage ("<= 0.005" as "≤ 0.5 %")."""
    op, bound = target.split()
    shown = f"{100 * float(bound):g} %" if card_value(key, 0.0).endswith("%") else bound
    return {">=": "≥", "<=": "≤"}[op] + " " + shown


def _test_label(metrics: dict) -> str:
    """What the card's `test` summary is: out-of-fold predictions (cards with a locked set) or the
    pre-lock card's held-out split."""
    return "out of fold" if "locked" in metrics else "held-out split"


def card_summary(card: dict | None = None) -> str:
    card = card or _load(CARD)
    prov, m = card.get("provenance", {}), card.get("metrics", {})
    parts = [
        f"Shipped card (`wsi_screen/weights/classifier.json`): `{card['arch']}` at {card['input_px']} px for the {card['field_um']:g} µm "
        f"field, exported {prov.get('exported', '?')} from commit {str(prov.get('git_commit', '?'))[:10]}."
    ]
    summaries = [(_test_label(m), m.get("test"))] + ([("locked set", m["locked"])] if "locked" in m else [])
    for label, s in summaries:
        if s:
            b = s.get("blast_test", {})
            parts.append(
                f"{label.capitalize()}: {s['n_images']} images ({b.get('n_positive', '?')} blasts), accuracy {num(s['accuracy'])}, "
                f"balanced accuracy {num(s['balanced_accuracy'])}, macro-F1 {num(s['macro_f1'])}, ECE {num(s.get('ece'))}."
            )
    review = m.get("needs_review_locked") or m.get("needs_review", {}).get("review_test")
    if review:
        parts.append(
            f"Needs review (top probability < 0.5 or P(reject) > 0.5): {pct(review['flagged_fraction'])} of cells; accuracy "
            f"{num(review['accuracy_kept'])} on the others, {num(review['accuracy_flagged'])} on those."
        )
    return prose(" ".join(parts))


def card_targets(card: dict | None = None) -> str:
    targets = (card or _load(CARD))["metrics"]["targets"]
    where = [w for w in WHERE if any(w in t for t in targets.values())]
    rows = []
    for key, t in targets.items():
        cells = [card_value(key, t[w]) if w in t else "" for w in where]
        rows.append([CARD_FIGURES.get(key, f"`{key}`"), _goal(key, t["target"]), *cells, _verdict(t["met"])])
    return table(["figure", "target", *(WHERE[w] for w in where), "met"], rows)


def card_per_class(card: dict | None = None) -> str:
    m = (card or _load(CARD))["metrics"]
    out = []
    for label, summary in [(_test_label(m), m.get("test"))] + ([("locked set", m["locked"])] if "locked" in m else []):
        if not summary:
            continue
        columns = ("precision", "sensitivity", "specificity")
        rows = [[code, str(c["n"]), *(card_value(k, c[k]) for k in columns)] for code, c in summary["per_class"].items()]
        out.append(f"{label.capitalize()}, {summary['n_images']} images:\n\n" + table(["class", "n", *columns], rows))
    return "\n\n".join(out)


def card_shifts(card: dict | None = None) -> str:
    shifts = (card or _load(CARD))["metrics"]["shift_robustness"]
    keys = list(next(iter(shifts.values())))
    rows = [[name, *(card_value(k, r.get(k)) for k in keys)] for name, r in shifts.items()]
    return table(["shift", *(CARD_FIGURES.get(k, k) for k in keys)], rows)


def card_limitations(card: dict | None = None) -> str:
    prov = (card or _load(CARD)).get("provenance", {})
    out = []
    for title, key in (("Limitations", "limitations"), ("How blast was checked to mean blast character", "generalisation_checks")):
        if prov.get(key):
            out.append(f"{title} (the card's `{key}`):\n\n" + "\n".join(prose(line, "* ") for line in prov[key]))
    return "\n\n".join(out)


# ---- the detector ------------------------------------------------------------------------------

SOURCE_ORDER = ("raabin", "pbc", "bccd", "bcd")


def _ci(lo_hi, digits: int = 3) -> str:
    return f"{lo_hi[0]:.{digits}f}–{lo_hi[1]:.{digits}f}"


def detector_eval() -> str:
    d = _load(DETECTOR_EVAL)
    figures = d["figures"]
    sources = [s for s in SOURCE_ORDER if s in figures] + sorted(set(figures) - set(SOURCE_ORDER) - {"pooled"}) + ["pooled"]
    scales = ", ".join(f"{s} {d['source_mpp'][s]:.4f}" for s in sources if s in d["source_mpp"])
    rows = []
    for s in sources:
        f = figures[s]
        rows.append(
            [
                s,
                str(f["fields"]),
                str(f["tp"] + f["fn"]),
                f"{f['precision']:.3f} ({_ci(f['precision_ci95'])})",
                f"{f['recall']:.3f} ({_ci(f['recall_ci95'])})",
                f"{f['f1']:.3f}",
                str(f["n_rbc"]),
                str(f["far_fp"]),
                f"{f['far_fp_per_1000_rbc']:.2f}",
                pct(f["swallowing_rbc_fraction"]),
                pct(f["swallowing_beyond_own_box_fraction"]),
                pct(f["swallowing_label_floor_fraction"]),
            ]
        )
    header = ["source", "fields", "WBC", "precision (95 % CI)", "recall (95 % CI)", "F1", "red cells", "far FP", "far FP / 1,000 RBC"]
    header += ["swallowing", "beyond its own box", "labels' own ellipses"]
    p = figures["pooled"]
    far, swallow = p["far_fp_per_1000_rbc"], p["swallowing_rbc_fraction"]
    pr_met = min(p["precision"], p["recall"]) >= 0.98
    lower_met = min(p["precision_ci95"][0], p["recall_ci95"][0]) >= 0.98
    pr_status = _verdict(pr_met) + (", not on the lower bounds" if pr_met and not lower_met else "")
    pooled = f"{p['precision']:.3f} / {p['recall']:.3f} (lower bounds {p['precision_ci95'][0]:.3f} / {p['recall_ci95'][0]:.3f})"
    swallowed = f"{pct(swallow)} ({pct(p['swallowing_rbc_fraction_of_leukocytes'])} of the matched leukocytes)"
    targets = [
        ["pooled precision and recall", "≥ 0.98 each", pooled, pr_status],
        ["far FP per 1,000 red cells", "≤ 0.05", f"{far:.2f} ({_ci(p['far_fp_per_1000_rbc_ci95'], 2)})", _verdict(far <= 0.05)],
        ["instances swallowing a red cell", "≤ 2 %", swallowed, _verdict(swallow <= 0.02)],
        ["… counting only the outline outside its leukocyte's box", "(diagnostic)", pct(p["swallowing_beyond_own_box_fraction"]), "—"],
        ["… the labelled boxes' inscribed ellipses alone", "(label floor)", pct(p["swallowing_label_floor_fraction"]), "—"],
    ]
    return "\n\n".join(
        [
            prose(
                f"Split `{d['split']}`, method `{d['method']}`, model `{d['model']}` (sha256 {d['model_sha256'][:12]}), "
                f"threshold {d['threshold']}; one µm/px per source: {scales}."
            ),
            table(header, rows),
            table(["target", "goal", "pooled", "status"], targets),
        ]
    )


def detector_second_look() -> str:
    """The detector alone beside what `screen` counts after the classifier's reject output."""
    alone, looked = _load(DETECTOR_EVAL)["figures"], _load(SECOND_LOOK)["figures"]
    sources = [s for s in SOURCE_ORDER if s in looked] + ["pooled"]
    rows = []
    for s in sources:
        a, b = alone[s], looked[s]
        rows.append(
            [
                s,
                f"{a['tp']} / {a['fp']} / {a['fn']}",
                str(b["rejected"]),
                f"{b['tp']} / {b['fp']} / {b['fn']}",
                f"{b['precision']:.3f} / {b['recall']:.3f}",
                f"{a['far_fp_per_1000_rbc']:.2f} → {b['far_fp_per_1000_rbc']:.2f}",
            ]
        )
    header = ["source", "detector: found / false / missed", "rejected", "counted: found / false / missed"]
    header += ["counted precision / recall", "far FP / 1,000 RBC"]
    return table(header, rows)


def detector_loso() -> str:
    d = _load(LOSO)
    runs = sorted(d["runs"], key=lambda r: SOURCE_ORDER.index(r["left_out"]) if r["left_out"] in SOURCE_ORDER else 99)
    rows = []
    for r in runs:
        f = r["figures"]
        rows.append(
            [
                r["left_out"],
                f"{r['train_fields']} / {r['val_fields']}",
                f"{r['test_fields']} ({f['tp'] + f['fn']} WBC)",
                f"{r['test_mpp'][r['left_out']]:.4f}",
                str(r["threshold"]),
                str(r["best_epoch"]["epoch"]),
                f"{f['precision']:.3f} ({_ci(f['precision_ci95'])})",
                f"{f['recall']:.3f} ({_ci(f['recall_ci95'])})",
                f"{f['far_fp_per_1000_rbc']:.2f}",
                pct(f["swallowing_rbc_fraction"]),
                f"{r['seconds']['total'] / 60:.0f}",
            ]
        )
    header = ["left out", "train / val fields", "test fields", "test µm/px", "threshold", "epoch", "precision (95 % CI)"]
    header += ["recall (95 % CI)", "far FP / 1,000 RBC", "swallowing", "minutes"]
    train = d["config"]["train"]
    recipe = (
        f"{d['detector']['arch']} at {d['detector']['mpp']} µm/px, {train['epochs']} epochs, {train['threads']} thread(s) per run, "
        f"negative weight {train['negative_weight']}, stain gamma {train['gamma'][0]}–{train['gamma'][1]}, "
        f"thresholds chosen among {', '.join(map(str, d['config']['thresholds']))}."
    )
    worst = f"worst source: precision {d['min_precision']:.3f}, recall {d['min_recall']:.3f}"
    targets = [
        ["precision and recall on each left-out source", "≥ 0.97 each", worst, _verdict(min(d["min_precision"], d["min_recall"]) >= 0.97)]
    ]
    return "\n\n".join([prose(recipe), table(header, rows), table(["target", "goal", "measured", "status"], targets)])


OUTLINE_CLASSES = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil")


def detector_outlines() -> str:
    d = _load(OUTLINES)
    figures = d["figures"]
    names = [c for c in OUTLINE_CLASSES if c in figures] + sorted(set(figures) - set(OUTLINE_CLASSES) - {"all"}) + ["all"]
    ious = ("cell_iou", "cell_iou_found", "nucleus_iou", "nucleus_iou_true_cell")
    rows = [[c, str(f["n"]), str(round(f["n"] * f["found"])), *(num(f[k]) for k in ious)] for c, f in ((c, figures[c]) for c in names)]
    header = ["class", "crops", "found", "cell IoU", "cell IoU, found ones", "nucleus IoU (detector's cell)", "nucleus IoU (true cell)"]
    sens = d.get("scale_sensitivity", {})
    lines = [f"wbc_seg scale {d['wbc_seg_mpp']:.3f} µm/px; detector sha256 {d['model_sha256'][:12]}.", table(header, rows)]
    if sens:
        cell, nucleus = (" and ".join(num(s[k]) for s in sens.values()) for k in ("cell_iou", "nucleus_iou"))
        lines.append(prose(f"At {' and '.join(sens)} the estimated scale the mean cell IoU is {cell}, the nucleus IoU {nucleus}."))
    a = figures["all"]
    lines.append(
        table(
            ["target", "goal", "all crops", "found cells / true cell", "status"],
            [
                ["cell IoU", "≥ 0.85", num(a["cell_iou"]), num(a["cell_iou_found"]), _verdict(a["cell_iou"] >= 0.85)],
                ["nucleus IoU", "≥ 0.8", num(a["nucleus_iou"]), num(a["nucleus_iou_true_cell"]), _verdict(a["nucleus_iou"] >= 0.8)],
            ],
        )
    )
    return "\n\n".join(lines)


# ---- another lab's leukocytes -------------------------------------------------------------------


def other_lab() -> str:
    d = _load(OTHER_LAB)
    header = ["model", "accuracy", *OUTLINE_CLASSES, "called blasts", "called atypical", "rejected", "outside training colours"]
    header.append("accuracy at 0.85× / 1.15× the scale")
    rows = []
    for name, m in d["models"].items():
        f = m["figures"]
        one = f["1x"]
        per = [pct(one["per_class"][c]["sensitivity"], 0) if c in one["per_class"] else "–" for c in OUTLINE_CLASSES]
        shifted = " / ".join(pct(f[k]["accuracy"]) for k in ("0.85x", "1.15x"))
        calls = [pct(one[k]) for k in ("blast_calls", "atypical_calls", "rejected")]
        rows.append([name, pct(one["accuracy"]), *per, *calls, pct(one.get("outside_training_colours")), shifted])
    first = next(iter(d["models"].values()))["figures"]["1x"]
    counts = ", ".join(f"{v['n']} {c}{'s' * (v['n'] != 1)}" for c, v in first["per_class"].items())
    labs = list(next(iter(d["models"].values()))["pbc_normal_in_other_labs_colours"])

    def moved(m: dict, lab: str) -> str:
        t = m["pbc_normal_in_other_labs_colours"][lab]
        return f"{pct(t['class_changed'], 0)} / {pct(t['became_blast'])}"

    prose_moved = (
        f"The {d['pbc_normal_cells']} locked PBC normal cells with PBC's stain rendered as each lab's (one move of the labs' "
        "mean colours: DeepAPL's and PBC's from unlocked cells of the classes both have, as the card's check; TXL-PBC val "
        "leukocytes' by source; wbc_seg's crops'), class changed / became a blast:"
    )
    return "\n\n".join(
        [
            prose(f"wbc_seg Dataset1: {counts}, read at {d['wbc_seg_mpp']:.3f} µm/px."),
            table(header, rows),
            prose(prose_moved),
            table(["model", *labs], [[name, *(moved(m, lab) for lab in labs)] for name, m in d["models"].items()]),
        ]
    )


# ---- the crops' scale --------------------------------------------------------------------------


def crop_scale() -> str:
    d = _load(CROP_SCALE)
    rows = [
        [
            name,
            str(s["images"]),
            str(s["images_with_red_cells"]),
            str(s["red_cells"]),
            f"{s['median_diameter_px']:.1f} ({_ci(s['median_diameter_ci95'], 1)})",
            f"{s['um_per_px']:.4f} ({_ci(s['um_per_px_ci95'], 4)})",
        ]
        for name, s in d["sets"].items()
    ]
    header = ["set", "images", "with red cells", "red cells", "median diameter, px (95 % CI)", "µm/px for a 7.5 µm red cell (95 % CI)"]
    lo, hi = d["ratio_deepapl_over_pbc_ci95"]
    box = d["txl_box_side_over_diameter"]
    return "\n\n".join(
        [
            table(header, rows),
            prose(
                f"DeepAPL / PBC diameter {d['ratio_deepapl_over_pbc']:.3f} [{lo:.3f}, {hi:.3f}]; pooled {d['crop_um_per_px']:.4f} µm/px, "
                f"`CROP_MPP` = {d['repo_crop_mpp']}. TXL-PBC's red-cell boxes are {box['median']:.3f}× the segmented diameter "
                f"({box['matched_cells']} matched cells), whence the boxes' {d['txl_box_um_per_px']:.3f} µm/px."
            ),
        ]
    )


# ---- slide agreement (a whole page) -------------------------------------------------------------


def slide_agreement_page(result: dict | None = None) -> str:
    """docs/slide_agreement.md from docs/slide_agreement.json (pipelines/slide_agreement.py writes both)."""
    result = _load(SLIDE_AGREEMENT) if result is None else result
    lines = [
        "# Per-cell agreement: generated slides vs the same crops",
        "",
        f"{result['n_locked_cells']} locked test cells of the 15 leukocyte codes ({result['model']};",
        f"detector: {result['detector']}); those the generator cannot cut out (not placed) are left out of",
        f"both sides. Slides: {result['slides']} (a DeepAPL",
        "patient, or PBC's donors). Slide: every placed cell's call by",
        "`wsi-screen screen --aoi full` (missed or found twice = wrong). Crops: the same cells'",
        f"files by `classify_files` at {result['crop_mpp']} µm/px. Difference = slide − crops, 95 % paired-bootstrap CI;",
        "McNemar exact p on the cells only one side gets right. Objects: what `screen` counted as",
        "leukocytes (of them, in no placed cell's outline: a red cell or platelet counted), and rejected.",
        "Produced by `pipelines/slide_agreement.py`.",
        "",
        "| generator | slide µm/px | cells (not placed) | slide | crops | slide − crops [95 % CI] | missed or split | McNemar p "
        "| counted (outside placed cells) | rejected |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["conditions"]:
        lo, hi = r["difference_ci95"]
        lines.append(
            f"| {r['generator']} | {r['mpp']} | {r['n_cells']} ({r['not_placed']}) | {100 * r['slide_accuracy']:.1f} % | "
            f"{100 * r['crop_accuracy']:.1f} % | {100 * r['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | "
            f"{r['missed_or_split']} | {r['mcnemar_p']:.2g} | {r['counted']} ({r['counted_outside_placed_cells']}) | {r['rejected']} |"
        )
    blast_rows = [(r, lab, b) for r in result["conditions"] for lab, b in r.get("blast_test", {}).items()]
    if blast_rows:  # conditions measured since the blast test was recorded (2026-12-07)
        lines += [
            "",
            "The blast test (MYO or MOB called) on the same cells, by lab: placed blasts called blasts,",
            "non-blasts called blasts, and the blast AUC of P(blast) (a missed cell's 0), on the slide and on the crops.",
            "",
            "| generator | slide µm/px | lab | blasts called: slide / crops | non-blasts called blasts: slide / crops "
            "| blast AUC: slide / crops |",
            "|---|---|---|---|---|---|",
        ]
        for r, lab, b in blast_rows:
            called = f"{b['blasts_called_slide']} / {b['blasts_called_crops']} of {b['blasts']}" if b["blasts"] else "(none placed)"
            auc_pair = "–" if b.get("auc_slide") is None else f"{b['auc_slide']:.3f} / {b['auc_crops']:.3f}"
            lines.append(
                f"| {r['generator']} | {r['mpp']} | {lab} | {called} | "
                f"{b['false_blasts_slide']} / {b['false_blasts_crops']} of {b['non_blasts']} | {auc_pair} |"
            )
    return "\n".join(lines) + "\n"


# ---- the prevalence interval on simulated smears -----------------------------------------------


def interval_coverage() -> str:
    d = _load(INTERVAL_COVERAGE)
    rows = [
        [pct(r["true_prevalence"]), f"{r['smears']}", pct(r["coverage"], 0), f"{100 * r['mean_width']:.1f} points", pct(r["flagged"], 0)]
        for r in d["rows"]
    ]
    return "\n\n".join(
        [
            f"{d['cells']} cells a smear, {d['bootstrap_samples']} bootstrap draws, seed {d['seed']}; "
            "written by `python -m benchmarks.interval_coverage`.",
            table(["blast prevalence", "smears", "interval covers the truth", "mean width", "flagged"], rows),
        ]
    )


# ---- the settings a lab changes ------------------------------------------------------------------

LAB_SETTINGS = {
    "slide.max_mpp": "coarsest scan accepted, µm/px (leukocyte morphology needs 63×/100× oil)",
    "aoi.min_coverage": "red-cell coverage below which the automatic AOI calls it feathered edge or glass",
    "aoi.max_coverage": "coverage above which it calls it the thick end",
    "classify.model": "classifier: `default` (shipped) or a weights file",
    "classify.device": "`auto`, `cpu` or `cuda` (also `--device`)",
    "classify.tta": "average the 8 rotations/flips (also `--tta`; 8× the classification time)",
    "classify.review_below": "a cell whose top probability is below this needs review",
    "aggregate.blast_threshold": "blast flag: the 95 % lower bound at the held-out error rates above this share",
    "aggregate.blast_high_p": "blast flag, rare population: P(blast) of a confident call",
    "aggregate.atypical_threshold": "atypical flag: the same lower bound above this share",
    "aggregate.eosinophilia_pct": "eosinophilia flag, % of leukocytes",
    "aggregate.left_shift_pct": "left-shift flag, % bands and immature granulocytes",
    "aggregate.apl_promyelocyte_pct": "suspected-APL flag, % promyelocytes",
    "aggregate.min_leukocytes": "fewer classified cells: the report warns that the differential is unreliable",
    "qc.min_focus": "focus score below which the report warns",
    "qc.max_stain_angle_deg": "stain colour this far from a Romanowsky stain warns",
    "qc.max_outside_colours": "share of leukocytes stained outside the classifier's training colours above which the report warns",
    "export.gallery_size": "cells shown in each report gallery",
    "dask.workers": "local worker processes, 0 = one per core (also `--workers`)",
}


def config_defaults() -> str:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    rows = []
    for key, what in LAB_SETTINGS.items():
        section, name = key.split(".")
        value = config[section][name]
        rows.append([f"`{key}`", f"`{str(value).lower() if isinstance(value, bool) else value}`", what])
    return table(["setting", "default", "what it does"], rows)


RENDERERS: dict[str, Callable[[], str]] = {
    "config-defaults": config_defaults,
    "card-summary": card_summary,
    "card-targets": card_targets,
    "card-per-class": card_per_class,
    "card-shifts": card_shifts,
    "card-limitations": card_limitations,
    "detector-eval": detector_eval,
    "detector-outlines": detector_outlines,
    "detector-loso": detector_loso,
    "detector-second-look": detector_second_look,
    "crop-scale": crop_scale,
    "other-lab": other_lab,
    "interval-coverage": interval_coverage,
}
GENERATED_PAGES: dict[str, Callable[[], str]] = {"docs/slide_agreement.md": slide_agreement_page}
PAGES = ("README.md", "docs/classifier.md", "docs/detector.md", "docs/statistics.md", "docs/benchmarks.md")


def render_blocks(text: str, renderers: dict[str, Callable[[], str]] = RENDERERS) -> str:
    """`text` with every generated block's body rendered afresh; text outside the blocks unchanged.
    An unknown block name, or an opening comment without its closing one, is an error."""
    opened = OPENING.findall(text)
    closed = [m.group("name") for m in BLOCK.finditer(text)]
    if opened != closed:
        raise ValueError(f"generated blocks without their closing comment: {sorted(set(opened) - set(closed))}")
    unknown = set(closed) - set(renderers)
    if unknown:
        raise ValueError(f"no renderer for generated block(s) {sorted(unknown)}; known: {sorted(renderers)}")
    return BLOCK.sub(lambda m: m.group(1) + renderers[m.group("name")]().rstrip("\n") + "\n" + m.group(4), text)


def rendered(root: Path = ROOT) -> dict[Path, tuple[str, str]]:
    """Every page's committed text and its text rendered now."""
    out = {}
    for page in PAGES:
        path = root / page
        if path.exists():
            text = path.read_text()
            out[path] = (text, render_blocks(text))
    for page, render in GENERATED_PAGES.items():
        path = root / page
        out[path] = (path.read_text() if path.exists() else "", render())
    return out


def stale(root: Path = ROOT) -> list[Path]:
    return [path for path, (now, fresh) in rendered(root).items() if now != fresh]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only list stale pages; exit 1 if any")
    args = parser.parse_args(argv)
    pages = rendered()
    old = [path for path, (now, fresh) in pages.items() if now != fresh]
    for path in old:
        print(f"{'stale' if args.check else 'rewritten'}: {path.relative_to(ROOT)}")
        if not args.check:
            path.write_text(pages[path][1])
    if not old:
        print("docs up to date")
    return 1 if old and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
