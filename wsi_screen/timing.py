"""Where a run's time goes: seconds per named stage, accumulated with `with stages.time("unet"):`.

A worker task times its own stages into a fresh `Stages` and returns them, frozen, with its result
(`Stages.items()`, a tuple of (name, seconds) pairs small enough to ride on any record); the
client adds them up (`Stages.add`). Worker seconds are summed over tasks, so with several
workers they exceed the wall time of their phase; client stages are wall time."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager


class Stages:
    """Seconds per stage name, in the order the stages first ran."""

    def __init__(self, seconds: Mapping[str, float] | Iterable[tuple[str, float]] = ()):
        self.seconds: dict[str, float] = {}
        self.add(seconds)

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        """Add the wall time of the block to `name` (also when it raises)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def add(self, seconds: Mapping[str, float] | Iterable[tuple[str, float]]) -> None:
        pairs = seconds.items() if isinstance(seconds, Mapping) else seconds
        for name, s in pairs:
            self.seconds[name] = self.seconds.get(name, 0.0) + float(s)

    def items(self) -> tuple[tuple[str, float], ...]:
        return tuple(self.seconds.items())

    def total(self) -> float:
        return sum(self.seconds.values())


def read_stage(what: str, level: int) -> str:
    """The stage name of a slide read at a pyramid level, e.g. "tile read (level 2)"."""
    return f"{what} read (level {level})"
