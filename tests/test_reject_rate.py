"""The reject step's cost to the count on a hand-built locked set, against the 0.5 % limit."""

import pandas as pd

from wsi_screen.train.reject_rate import reject_rates


def _crops(label: str, n: int, p_rejects: list[float]) -> pd.DataFrame:
    """`n` crops of `label`, the first ones with the given P(reject), the rest at 0.01."""
    p = p_rejects + [0.01] * (n - len(p_rejects))
    return pd.DataFrame({"file": [f"{label}/{i}.jpg" for i in range(n)], "label": label, "p_reject": p})


def _locked(myo_rejected: int) -> pd.DataFrame:
    return pd.concat(
        [
            _crops("NGS", 400, [0.9, 0.6, 0.5]),  # 2 of 400 removed: exactly at the limit; 0.5 is kept
            _crops("LYT", 100, [0.5]),
            _crops("MYO", 300, [0.99] * myo_rejected),
            _crops("NLK", 10, [0.95] * 10),  # non-leukocytes: the reject step's job, not its cost
        ],
        ignore_index=True,
    )


def test_each_class_share_and_myo_on_its_own():
    r = reject_rates(_locked(myo_rejected=3))
    assert set(r["per_class"]) == {"NGS", "LYT", "MYO"}
    assert r["per_class"]["NGS"] == {"n": 400, "rejected": 2, "share": 0.005}
    assert r["per_class"]["LYT"] == {"n": 100, "rejected": 0, "share": 0.0}
    assert r["max_class"] == "MYO" and r["max_share"] == 0.01 and r["myo_share"] == 0.01
    assert r["target"] == "<= 0.005" and r["met"] is False


def test_the_limit_is_met_when_no_class_loses_more_than_half_a_percent():
    r = reject_rates(_locked(myo_rejected=1))
    assert r["max_class"] == "NGS" and r["max_share"] == 0.005 and r["myo_share"] == 1 / 300 and r["met"] is True
    empty = reject_rates(_crops("NLK", 5, [0.9] * 5))
    assert empty["per_class"] == {} and empty["max_class"] is None and empty["myo_share"] is None and empty["met"] is None
