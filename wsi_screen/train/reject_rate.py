"""The reject step's cost to the count, for the model card: the share of locked leukocyte crops of
each class that the reject output removes (`records.is_rejected`, the rule the slide report counts
by). Limit (detector issue): at most 0.5 % for any class; MYO, the class the blast flag rests on,
is also reported on its own."""

from __future__ import annotations

import pandas as pd

from ..classes import CLASS_CODES
from ..records import is_rejected

REJECT_RATE_MAX = 0.005  # share of any class's leukocyte crops the reject step may remove


def reject_rates(predictions: pd.DataFrame) -> dict:
    """Per true class (`label`, leukocyte codes only; non-leukocyte rows are left out): crops `n`,
    `rejected` and their `share`; the largest share and its class, MYO's share (None without MYO
    crops), the target and whether every class meets it (None without leukocyte crops).
    `predictions` holds `label` and `p_reject` per crop (preds.csv joined to its labels)."""
    leukocytes = predictions[predictions["label"].isin(CLASS_CODES)]
    rejected = pd.Series(is_rejected(leukocytes["p_reject"].to_numpy()), index=leukocytes.index)
    per_class = {}
    for code in CLASS_CODES:
        hits = rejected[leukocytes["label"] == code]
        if len(hits):
            per_class[code] = {"n": len(hits), "rejected": int(hits.sum()), "share": float(hits.mean())}
    worst = max(per_class, key=lambda c: per_class[c]["share"], default=None)
    highest = per_class[worst]["share"] if worst else 0.0
    return {
        "per_class": per_class,
        "max_share": highest,
        "max_class": worst,
        "myo_share": per_class["MYO"]["share"] if "MYO" in per_class else None,
        "target": f"<= {REJECT_RATE_MAX}",
        "met": highest <= REJECT_RATE_MAX if per_class else None,
    }
