"""Training runs as subprocesses in waves, side by side: on a 2-core machine two one-thread runs
use both cores without the stalls that two-thread training suffers when anything else runs, and
a last run left on its own takes both threads instead of leaving a core idle for a whole run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click

from .splits import LOCKED_TEST


def train_command(
    data: Path,
    run_dir: Path,
    config: Path,
    txl: Path,
    folds: int = 0,
    fold: int | None = None,
    final: bool = False,
    init: Path | None = None,
) -> list[str]:
    """`wsi-screen train` on `data` less the locked cells, with the TXL-PBC reject crops, from the
    weights `init` when given."""
    cmd = [
        sys.executable,
        "-m",
        "wsi_screen.cli",
        "train",
        str(data),
        "-o",
        str(run_dir),
        "--config",
        str(config),
        "--exclude",
        str(LOCKED_TEST),
        "--non-leukocytes",
        str(txl),
        "--device",
        "cpu",
    ]
    if folds:
        cmd += ["--folds", str(folds), "--fold", str(fold)]
    return cmd + (["--final"] if final else []) + (["--init-weights", str(init)] if init else [])


def run_jobs(jobs: list[tuple[list[str], Path]], parallel: int, repo: Path) -> None:
    """Run (command, log) jobs in waves of `parallel`, each job of a wave with `parallel` // (its
    size) torch threads; the next wave starts when the whole wave is done. A failed job is
    reported, not fatal."""
    for first in range(0, len(jobs), parallel):
        wave = jobs[first : first + parallel]
        threads = parallel // len(wave)  # a wave is never larger than `parallel`
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(repo)}
        running = []
        for cmd, log in wave:
            log.parent.mkdir(parents=True, exist_ok=True)
            running.append(
                (subprocess.Popen([*cmd, "--threads", str(threads)], stdout=log.open("a"), stderr=subprocess.STDOUT, env=env), log)
            )
            click.echo(f"{time.strftime('%H:%M:%S')} started {log} (torch threads: {threads})")
        for proc, log in running:
            done = proc.wait() == 0
            click.echo(f"{time.strftime('%H:%M:%S')} {'finished' if done else f'FAILED ({proc.returncode})'} {log}")
