"""Training runs go in waves: side by side on one thread each, and a lone last run on every thread."""

import sys

from wsi_screen.train.jobs import run_jobs

REPORT = (
    "import os, sys, time; print(sys.argv[sys.argv.index('--threads') + 1], os.environ['OMP_NUM_THREADS'], time.time());"
    "time.sleep(0.5); print(time.time())"
)


def test_runs_go_in_waves_and_a_lone_last_run_takes_every_thread(tmp_path):
    logs = [tmp_path / "runs" / f"job_{k}.log" for k in range(3)]
    run_jobs([([sys.executable, "-c", REPORT], log) for log in logs], 2, tmp_path)
    threads, omp, started, ended = zip(*(log.read_text().split() for log in logs))
    assert threads == omp == ("1", "1", "2")
    assert float(started[1]) < float(ended[0]) and float(started[0]) < float(ended[1])  # the first two side by side
    assert float(started[2]) >= max(float(ended[0]), float(ended[1]))  # the last waited for its wave
