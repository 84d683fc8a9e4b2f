"""Detection scoring against ground-truth boxes: a detection matches a box when its centroid
falls inside it, one-to-one (maximum bipartite matching), after duplicate boxes (IoU ≥ 0.5, a few
in TXL-PBC) are merged, as the detection issues define. Proportions carry Wilson 95 % intervals:
a source has only ~50-100 leukocytes in val, where the normal approximation leaves [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components


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

    def with_intervals(self) -> dict:
        """as_dict plus Wilson 95 % intervals of precision and recall."""
        return {**self.as_dict(), "precision_ci95": wilson(self.tp, self.tp + self.fp), "recall_ci95": wilson(self.tp, self.tp + self.fn)}


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials (Wilson 1927); (0, 1) when n = 0."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) IoU of boxes x0 y0 x1 y1."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[:, 2]) - np.maximum(a[:, None, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[:, 3]) - np.maximum(a[:, None, 1], b[:, 1]), 0, None)
    area_a, area_b = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter = w * h
    return inter / np.maximum(area_a[:, None] + area_b - inter, 1e-9)


def merge_duplicates(boxes: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """Boxes that overlap another at IoU ≥ `iou` (transitively) become their mean box: one cell
    labelled twice is one cell to find, not a guaranteed miss."""
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    _, group = connected_components(csr_matrix(box_iou(boxes, boxes) >= iou), directed=False)
    return np.stack([boxes[group == g].mean(0) for g in range(group.max() + 1)]) if len(boxes) else boxes


def assign(centroids: np.ndarray, boxes: np.ndarray) -> list[tuple[int, int]]:
    """Matched (detection, box) index pairs: centroid inside box, one-to-one, as many as possible.
    centroids (n, 2) x/y; boxes (m, 4) x0 y0 x1 y1, same pixel frame."""
    centroids = np.asarray(centroids, float).reshape(-1, 2)
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    if not len(centroids) or not len(boxes):
        return []
    x, y = centroids[:, :1], centroids[:, 1:]
    inside = (x >= boxes[:, 0]) & (x < boxes[:, 2]) & (y >= boxes[:, 1]) & (y < boxes[:, 3])
    rows, cols = linear_sum_assignment(~inside)  # maximise the number of inside pairs
    return [(int(r), int(c)) for r, c in zip(rows, cols) if inside[r, c]]


def match(centroids: np.ndarray, boxes: np.ndarray) -> DetectionScore:
    """Counts of `assign`: centroids (n, 2) x/y; boxes (m, 4) x0 y0 x1 y1, same pixel frame."""
    n, m = len(np.asarray(centroids).reshape(-1, 2)), len(np.asarray(boxes).reshape(-1, 4))
    tp = len(assign(centroids, boxes))
    return DetectionScore(tp, n - tp, m - tp)
