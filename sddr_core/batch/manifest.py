"""A batch job's manifest: one line per finished input, so a rerun skips what is done.

The manifest is a folder, `OUTPUT/.sddr-manifest/`, of JSON-lines files, one per worker
process (`HOST-PID.jsonl`): a worker appends its line right after its item's files are in
place, and no two processes (on a cluster, no two machines sharing a file system) ever
append to one file. A line counts on a rerun only when it was written with the same settings,
its inputs still have the size and modification time they had, and its outputs are all there;
a line cut short by a crash is ignored, so at worst that item is refined again.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from .job import Item

FOLDER = ".sddr-manifest"


class Manifest:
    """The manifest of the job writing into `output` (a folder) with settings digest `key`."""

    def __init__(self, output: str | os.PathLike, key: str) -> None:
        self.folder = Path(output) / FOLDER
        self.key = key

    def finished(self, items: Iterable[Item]) -> set[Item]:
        """The items (with absolute paths) a previous run finished with these settings."""
        lines = {}
        for part in sorted(self.folder.glob("*.jsonl")):
            try:
                text = part.read_text(encoding="utf-8")
            except OSError as err:
                raise InputError(f"cannot read manifest '{part}': {err.strerror or err}") from None
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                    lines[tuple(entry["inputs"]), tuple(entry["outputs"])] = entry
                except (ValueError, KeyError, TypeError):  # a line cut short by a crash
                    continue
        done = set()
        for item in items:
            entry = lines.get((item.inputs, item.outputs))
            if entry is not None and entry.get("settings") == self.key \
                    and entry.get("stamps") == _stamps(item.inputs) \
                    and all(path.exists() for path in item.written()):
                done.add(item)
        return done

    def record(self, item: Item) -> None:
        """Append `item`'s line (absolute paths) to this process's file, flushed to disk."""
        line = json.dumps({"inputs": item.inputs, "outputs": item.outputs,
                           "settings": self.key, "stamps": _stamps(item.inputs)})
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            part = self.folder / f"{socket.gethostname()}-{os.getpid()}.jsonl"
            with open(part, "a", encoding="utf-8") as file:
                file.write(line + "\n")
                file.flush()
                os.fsync(file.fileno())
        except OSError as err:
            raise InputError(f"cannot write manifest in '{self.folder}': "
                             f"{err.strerror or err}") from None


def _stamps(paths: Iterable[str]) -> list[list[int]] | None:
    """[size, modification time in ns] of each path; None when one is gone."""
    try:
        return [[status.st_size, status.st_mtime_ns] for status in map(os.stat, paths)]
    except OSError:
        return None
