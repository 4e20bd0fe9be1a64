"""A progress line on stderr for long loops (images, windows); no dependency needed.

On a terminal the line redraws in place; in a log (CI, a pipe) one line per step is printed,
so a stalled run shows where it stopped.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Call it with (done, total) as work finishes; `note` names the item just done."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 24) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.start = time.perf_counter()
        self.redraw = self.stream.isatty()

    def __call__(self, done: int, total: int, note: str = "") -> None:
        elapsed = time.perf_counter() - self.start
        filled = round(self.width * done / max(total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        remaining = elapsed / done * (total - done) if done else 0.0
        line = (f"{self.label} {done}/{total} [{bar}] {elapsed:.0f}s elapsed, "
                f"~{remaining:.0f}s left {note}".rstrip())
        if self.redraw:
            end = "\n" if done >= total else ""
            self.stream.write(f"\r\033[K{line}{end}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
