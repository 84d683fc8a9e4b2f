"""The 15 morphological classes of Matek et al. 2019, in the fixed order used everywhere
(probability columns, configs, reports), and the two clinical tests built from them."""

from __future__ import annotations

import numpy as np

CLASS_NAMES: dict[str, str] = {
    "NGS": "Neutrophil (segmented)",
    "NGB": "Neutrophil (band)",
    "LYT": "Lymphocyte (typical)",
    "LYA": "Lymphocyte (atypical)",
    "MON": "Monocyte",
    "EOS": "Eosinophil",
    "BAS": "Basophil",
    "MYO": "Myeloblast",
    "PMO": "Promyelocyte",
    "PMB": "Promyelocyte (bilobed)",
    "MYB": "Myelocyte",
    "MMZ": "Metamyelocyte",
    "MOB": "Monoblast",
    "EBO": "Erythroblast",
    "KSC": "Smudge cell",
}
CLASS_CODES: tuple[str, ...] = tuple(CLASS_NAMES)

BLAST: tuple[str, ...] = ("MYO", "MOB")
ATYPICAL: tuple[str, ...] = ("MYO", "MOB", "MYB", "MMZ", "PMO", "PMB", "EBO", "LYA")

# QuPath display colours (RGB). Blasts are saturated red/magenta so they stand out.
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "NGS": (70, 130, 180),
    "NGB": (100, 160, 210),
    "LYT": (60, 179, 113),
    "LYA": (154, 205, 50),
    "MON": (218, 165, 32),
    "EOS": (255, 140, 0),
    "BAS": (106, 90, 205),
    "MYO": (255, 0, 0),
    "PMO": (255, 105, 180),
    "PMB": (219, 112, 147),
    "MYB": (186, 85, 211),
    "MMZ": (147, 112, 219),
    "MOB": (255, 0, 255),
    "EBO": (139, 69, 19),
    "KSC": (128, 128, 128),
}
LEUKOCYTE = "Leukocyte"
LEUKOCYTE_COLOR = (0, 200, 255)
REJECTED = "Rejected"  # an object the classifier's reject output calls no leukocyte (records.is_rejected)
REJECTED_COLOR = (90, 90, 90)


def class_index(code: str) -> int:
    """Column index of a class code; raises KeyError naming the code."""
    try:
        return CLASS_CODES.index(code)
    except ValueError:
        raise KeyError(f"unknown class code {code!r}; expected one of {' '.join(CLASS_CODES)}") from None


def blast_called(probs: np.ndarray) -> np.ndarray:
    """Per cell (rows of probabilities in CLASS_CODES order): is its argmax a blast class? The
    call that blast counts, false-blast rates and sensitivities are all made of."""
    return np.isin(np.asarray(CLASS_CODES)[np.asarray(probs).argmax(1)], BLAST)


def member_probability(probs: np.ndarray, members: tuple[str, ...]) -> np.ndarray:
    """P(a class set) per cell: the summed probabilities of its members (e.g. P(blast) = P(MYO) + P(MOB))."""
    return np.asarray(probs)[:, [CLASS_CODES.index(c) for c in members]].sum(1)
