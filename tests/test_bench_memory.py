"""The benchmarks' peak-memory measure, on which the memory targets are judged: it must see a
child process's memory (Dask workers are children) and stop on a command that fails."""

import subprocess
import sys

import pytest

from benchmarks.common import PeakMemory, command_peak_memory


def test_peak_memory_counts_a_child_process():
    code = "import time, numpy as np; a = np.ones(300_000_000 // 8); time.sleep(1.5)"
    with PeakMemory() as mem:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert mem.at_peak["descendants"] >= 0.3e9
    assert mem.peak == mem.at_peak["root"] + mem.at_peak["descendants"]
    assert 0 < mem.at_peak["seconds"] < 10


def test_a_failing_command_stops_the_benchmark(tmp_path):
    with pytest.raises(SystemExit, match="exited with"):
        command_peak_memory("detect", tmp_path / "missing.tiff", tmp_path / "out", 1)
