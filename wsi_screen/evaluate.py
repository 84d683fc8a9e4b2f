"""Evaluation report for one or several prediction files (e.g. CV folds) against labels: the
paper's Table 1 (per-class precision/sensitivity/specificity, mean ± SD over files, image counts),
a log-scale confusion matrix, blast and atypical ROC curves, and a JSON holding every number."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from scipy import optimize, stats  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from .classes import ATYPICAL, BLAST, CLASS_CODES, blast_called  # noqa: E402
from .errors import DatasetError  # noqa: E402
from .metrics import screening_test, summarise  # noqa: E402


def joined(preds_path: str | Path, labels: pd.DataFrame) -> pd.DataFrame:
    """Predictions with their `class` (and `source` if known), leukocyte classes only, matched on
    the resolved path of `file` (labels' relative paths are relative to the labels file)."""
    preds = pd.read_csv(preds_path)
    missing = {"file", *CLASS_CODES} - set(preds.columns)
    if missing:
        raise DatasetError(f"predictions lack column(s) {', '.join(sorted(missing))}", preds_path)
    preds["key"] = [str(Path(f).resolve()) for f in preds["file"]]
    frame = preds.merge(labels.drop(columns="file"), on="key", how="inner")
    if frame.empty:
        raise DatasetError("no file in the predictions has a label", preds_path)
    return frame[frame["class"].isin(CLASS_CODES)].reset_index(drop=True)


def read_labels(path: str | Path) -> pd.DataFrame:
    """CSV with `file` and `class` (a run's split.csv, or the shared manifest.csv)."""
    path = Path(path)
    labels = pd.read_csv(path, dtype={"patient": str})
    if not {"file", "class"} <= set(labels.columns):
        raise DatasetError("labels CSV needs 'file' and 'class' columns", path)
    labels = labels[[c for c in ("file", "class", "source", "patient") if c in labels.columns]]
    labels["key"] = [str((path.parent / f).resolve()) for f in labels["file"]]
    return labels.drop_duplicates("key")


def full_summary(frame: pd.DataFrame, threshold: float = 0.5) -> dict:
    """`summarise` plus, where sources are known, per source, blast AUC within each source and the
    false-blast rate (argmax a blast class) among the images of each source that are not blasts;
    where patients are known, their blast-call rates (per_patient_rates)."""
    probs, labels = frame[list(CLASS_CODES)].to_numpy(), frame["class"].to_numpy()
    out = summarise(labels, probs, threshold)
    called, blast = blast_called(probs), np.isin(labels, BLAST)
    if "source" in frame.columns:
        out["per_source"] = {}
        for source, rows in frame.groupby("source").indices.items():
            s = summarise(labels[rows], probs[rows], threshold)
            normal = rows[~blast[rows]]
            s["false_blast_rate"] = float(called[normal].mean()) if len(normal) else math.nan
            s["false_blast_rate_at_threshold"] = 1 - s["blast_test"]["specificity"]
            del s["confusion"]
            out["per_source"][str(source)] = s
    if "patient" in frame.columns:
        out["per_patient"] = per_patient_rates(frame["patient"], called, blast)
    return out


def confident_negatives(frame: pd.DataFrame) -> dict:
    """Per clinical test: how many held-out non-members reach P ≥ t, for t = 0.50 … 0.99."""
    thresholds = np.round(np.arange(0.5, 0.995, 0.01), 2)
    out = {}
    for name, members in (("blast", BLAST), ("atypical", ATYPICAL)):
        p = frame[list(members)].sum(axis=1).to_numpy()[~frame["class"].isin(members).to_numpy()]
        out[name] = {"n_negative": int(len(p)), "thresholds": thresholds.tolist(), "counts": [int((p >= t).sum()) for t in thresholds]}
    return out


def operating_metrics(frame: pd.DataFrame, threshold: float = 0.5) -> dict:
    """What `summarize.rates_from_metrics` reads (the held-out confusion, confident negatives and,
    where patients are known, the patient effect) from held-out predictions with their `class`: a
    card carrying them can correct a slide's prevalence for its model's errors."""
    out = {"test": full_summary(frame, threshold), "confident_negatives": confident_negatives(frame)}
    if "patient" in frame.columns:
        out["patient_effect"] = patient_effects(frame)
    return out


def patient_effects(frame: pd.DataFrame) -> dict:
    """Per clinical test, how far one patient's false calls stray from what its cells' classes
    explain: each patient's member calls among its non-member cells, against the sum of their
    classes' pooled member-call rates (`fit_patient_effect`)."""
    labels = frame["class"].to_numpy()
    predicted = np.asarray(CLASS_CODES)[frame[list(CLASS_CODES)].to_numpy().argmax(1)]
    patients = frame["patient"].fillna("").astype(str).to_numpy()
    out = {}
    for name, members in (("blast", BLAST), ("atypical", ATYPICAL)):
        negative = ~np.isin(labels, members)
        called = pd.Series(np.isin(predicted, members)[negative], dtype=float)
        rate = called.groupby(labels[negative]).transform("mean")  # the pooled rate of each cell's class
        known = patients[negative] != ""
        observed = called[known].groupby(patients[negative][known]).sum()
        expected = rate[known].groupby(patients[negative][known]).sum()
        out[name] = fit_patient_effect(observed.to_numpy(), expected.to_numpy())
    return out


def fit_patient_effect(observed: np.ndarray, expected: np.ndarray) -> dict:
    """Maximum-likelihood Gamma–Poisson fit: patient j's false calls ~ Poisson(θ_j · expected_j),
    θ ~ Gamma(shape, scale = mean / shape). `mean` is how many times its classes' pooled rate a
    patient's cells draw on average, `shape` how alike patients are (large: alike). Empty where
    fewer than 5 patients expect any call."""
    keep = np.asarray(expected, float) > 0
    obs, exp_ = np.asarray(observed, float)[keep], np.asarray(expected, float)[keep]
    if len(obs) < 5:
        return {}

    def nll(x):
        mean, shape = np.exp(x)
        return -stats.nbinom.logpmf(obs, shape, shape / (shape + mean * exp_)).sum()

    x = optimize.minimize(nll, [0.0, 0.0], method="Nelder-Mead", bounds=[(-5, 5), (-5, 9)]).x
    return {"patients": int(len(obs)), "mean": float(np.exp(x[0])), "shape": float(np.exp(x[1]))}


def per_patient_rates(patients: pd.Series, called: np.ndarray, blast: np.ndarray) -> dict:
    """Per patient id: how many of its non-blast cells are called blasts (blast_called) and how
    many of its blasts are. A slide is one patient, and its cells' rates, not the pooled ones,
    decide how far its corrected blast prevalence is off (docs/classifier.md)."""
    out = {}
    for patient, rows in patients.groupby(patients.fillna("").astype(str)).indices.items():
        if patient:
            neg, pos = rows[~blast[rows]], rows[blast[rows]]
            out[patient] = {
                "non_blasts": len(neg),
                "false_blast_calls": int(called[neg].sum()),
                "false_blast_rate": float(called[neg].mean()) if len(neg) else math.nan,
                "blasts": len(pos),
                "blast_calls": int(called[pos].sum()),
                "blast_sensitivity": float(called[pos].mean()) if len(pos) else math.nan,
            }
    return out


def evaluate(
    pred_paths: list[str | Path],
    labels_path: str | Path,
    out_dir: str | Path,
    threshold: float = 0.5,
    annotations: str | Path | None = None,
) -> dict:
    """Write report.json, table1.csv, confusion.png and roc.png to out_dir; return the report. With
    a Matek annotations.dat, the re-annotators' operating points (agreement.human_agreement, over
    all re-annotated images) are drawn on the ROC plots and stored as `human_operating_points`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = read_labels(labels_path)
    frames = [joined(p, labels) for p in pred_paths]
    runs = [full_summary(f, threshold) for f in frames]
    table = table1(runs)
    table.to_csv(out_dir / "table1.csv", index_label="class")
    report = {
        "predictions": [str(p) for p in pred_paths],
        "labels": str(labels_path),
        "runs": runs,
        "table1": table.reset_index().to_dict("records"),
    }
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "mean_sensitivity", "ece"):
        vals = [r[key] for r in runs]
        report[key] = {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0}
    for test in ("blast_test", "atypical_test"):
        report[test] = {
            k: {
                "mean": float(np.mean([r[test][k] for r in runs])),
                "sd": float(np.std([r[test][k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0,
            }
            for k in ("auc", "sensitivity", "specificity")
        }
    plot_confusion(np.sum([r["confusion"] for r in runs], axis=0), out_dir / "confusion.png")
    human = None
    if annotations is not None:
        from .agreement import human_agreement

        human = {
            who: {t: {k: r[t][k] for k in ("sensitivity", "specificity")} for t in ("blast_test", "atypical_test")}
            for who, r in human_agreement(annotations).items()
        }
        report["human_operating_points"] = human
    plot_roc(frames, out_dir / "roc.png", human)
    (out_dir / "report.json").write_text(json.dumps(json_safe(report), indent=2) + "\n")
    return report


def table1(runs: list[dict]) -> pd.DataFrame:
    """Per class: image count (summed over runs) and mean ± SD of precision, sensitivity, specificity."""
    rows = {}
    for c in CLASS_CODES:
        row = {"n": sum(r["per_class"][c]["n"] for r in runs)}
        for m in ("precision", "sensitivity", "specificity"):
            vals = np.array([r["per_class"][c][m] for r in runs], float)
            ok = vals[~np.isnan(vals)]
            row[m] = float(ok.mean()) if len(ok) else math.nan
            row[f"{m}_sd"] = float(ok.std(ddof=1)) if len(ok) > 1 else (0.0 if len(ok) else math.nan)
        rows[c] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def plot_confusion(counts, path: Path) -> None:
    counts = np.asarray(counts, float)
    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.imshow(np.where(counts > 0, counts, np.nan), norm=LogNorm(vmin=1, vmax=max(counts.max(), 1)), cmap="viridis")
    ax.set_xticks(range(len(CLASS_CODES)), CLASS_CODES, rotation=90)
    ax.set_yticks(range(len(CLASS_CODES)), CLASS_CODES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(counts):
        if v:
            ax.text(j, i, int(v), ha="center", va="center", fontsize=6, color="k" if v > np.sqrt(counts.max()) else "w")
    fig.colorbar(im, ax=ax, label="images (log scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_roc(frames: list[pd.DataFrame], path: Path, human: dict | None = None) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, (test, name, codes) in zip(axes, (("blast_test", "blast (MYO+MOB)", BLAST), ("atypical_test", "atypical", ATYPICAL))):
        for k, f in enumerate(frames):
            truth = f["class"].isin(codes).to_numpy()
            if 0 < truth.sum() < len(truth):
                score = f[list(codes)].sum(axis=1).to_numpy()
                fpr, tpr, _ = roc_curve(truth, score)
                ax.plot(fpr, tpr, label=f"run {k}: AUC {screening_test(truth, score)['auc']:.4f}")
        for (who, point), marker in zip((human or {}).items(), "^s"):
            ax.plot(1 - point[test]["specificity"], point[test]["sensitivity"], marker, ms=8, mfc="none", mec="k", label=f"human {who}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(title=name, xlabel="1 - specificity", ylabel="sensitivity")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def json_safe(x):
    """NaN → null (strict JSON), numpy scalars → Python, recursively."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    return None if isinstance(x, float) and math.isnan(x) else x
