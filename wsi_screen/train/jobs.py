"""Training runs as one-thread subprocesses, several at a time: on a 2-core machine two one-thread
runs use both cores without the stalls that two-thread training suffers when anything else runs."""

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
    """Run (command, log) jobs, `parallel` at a time, one torch thread each; a failed job is reported, not fatal."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    queue, running = list(jobs), []
    while queue or running:
        while queue and len(running) < parallel:
            cmd, log = queue.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            running.append((subprocess.Popen(cmd, stdout=log.open("a"), stderr=subprocess.STDOUT, env=env), log))
            click.echo(f"{time.strftime('%H:%M:%S')} started {log}")
        time.sleep(10)
        for proc, log in [r for r in running if r[0].poll() is not None]:
            running.remove((proc, log))
            click.echo(f"{time.strftime('%H:%M:%S')} {'finished' if proc.returncode == 0 else f'FAILED ({proc.returncode})'} {log}")
