"""Detection scoring against ground-truth boxes: a detection matches a box when its centroid
falls inside it, one-to-one (maximum bipartite matching), as the detection issue defines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class DetectionScore:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: "DetectionScore") -> "DetectionScore":
        return DetectionScore(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def as_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision, "recall": self.recall, "f1": self.f1}


def match(centroids: np.ndarray, boxes: np.ndarray) -> DetectionScore:
    """centroids (n, 2) x/y; boxes (m, 4) x0 y0 x1 y1, same pixel frame."""
    centroids = np.asarray(centroids, float).reshape(-1, 2)
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    if not len(centroids) or not len(boxes):
        return DetectionScore(0, len(centroids), len(boxes))
    x, y = centroids[:, :1], centroids[:, 1:]
    inside = (x >= boxes[:, 0]) & (x < boxes[:, 2]) & (y >= boxes[:, 1]) & (y < boxes[:, 3])
    rows, cols = linear_sum_assignment(~inside)  # maximise the number of inside pairs
    tp = int(inside[rows, cols].sum())
    return DetectionScore(tp, len(centroids) - tp, len(boxes) - tp)
