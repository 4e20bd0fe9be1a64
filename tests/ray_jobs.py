"""How the Ray tests run `sddr`: in this process at one torch thread (the single-process
reference, decision 222), or as its own process and Ray driver. No Ray import: a test file
without the extra skips on its own."""

import signal
import subprocess
import sys
from pathlib import Path

import torch

from sddr_core.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def one_thread(argv: list[str]) -> int:
    threads = torch.get_num_threads()
    try:
        return main(["--threads", "1", *argv])
    finally:
        torch.set_num_threads(threads)


def sddr_job(*argv: str) -> subprocess.Popen:
    """`sddr …` as its own process (its own Ray driver), output captured, with Ctrl-C's
    default disposition as a terminal gives it: a child inherits an ignored SIGINT, and in the
    whole suite something before this file leaves it ignored in pytest's process."""
    return subprocess.Popen([sys.executable, "-m", "sddr_core.cli.main", *argv], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
