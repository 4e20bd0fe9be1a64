"""Progress of long loops (network passes, images) as a `tqdm` bar on stderr.

The pipeline and the eval runner report progress as `progress(done, total, note)` callbacks, so
they need no terminal code; this adapter draws those calls.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class ProgressBar:
    """Call it with (done, total) as work finishes; `note` names the item just done. The bar
    closes (and ends its line) when `done` reaches `total`."""

    def __init__(self, label: str, total: int | None = None, unit: str = "it",
                 stream: TextIO | None = None) -> None:
        self.bar = tqdm(desc=label, total=total, unit=unit,
                        file=stream if stream is not None else sys.stderr)

    def __call__(self, done: int, total: int, note: str = "") -> None:
        self.bar.total = total
        if note:
            self.bar.set_postfix_str(note, refresh=False)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        """End the bar (also when the loop stops early: a failure, a cancel)."""
        self.bar.close()
