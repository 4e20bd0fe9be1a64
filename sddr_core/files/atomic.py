"""Safe output: a file at its final path is either the old one or the complete new one, and
never one of the run's own inputs.

Encoders that fail half-way (or a Ctrl-C, or a full disk) would otherwise leave a truncated file
where the user expects a result, or destroy the result of an earlier run; an output path that
names an input (`refine photo.png photo.png`) would replace the input with the result.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from ..errors import InputError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    The temporary file lives in the same folder (so the final ``os.replace`` is a rename on one
    file system, which is atomic) and keeps the suffix of ``path`` (so encoders that choose the
    format from the extension still work), e.g. ``.depth.tmp-1a2b3c4d.png``. It is created empty;
    the block overwrites it. On any exception (Ctrl-C included) the temporary file is removed
    and the exception re-raised, leaving an earlier file at ``path`` untouched; an ``OSError``
    (a full disk, a quota, a read-only folder) is re-raised as :class:`InputError` naming
    ``path`` and the reason.

    The file gets the mode a file written directly would get (0o666 less the umask), whatever
    the block's writer made it. Missing parent folders are created; one that cannot be raises
    :class:`InputError` naming it.
    """
    target = Path(path)
    if "\0" in str(target):  # the OS refuses it with a ValueError, not an OSError
        raise InputError(f"cannot write output file {str(target)!r}: its name holds a NUL "
                         "character")
    claimed: list[Path] = []  # named before it is created, so a signal at any point is cleaned up
    try:
        tmp = _create_temp(target.parent, target, claimed)
        mode = stat.S_IMODE(tmp.stat().st_mode)  # 0o666 less the umask
        try:
            yield tmp
            # A writer may have replaced the file with its own (safetensors' `save_file` makes
            # it 0o600, which would leave exported weights unreadable to other users).
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except OSError as e:
            raise InputError(f"cannot write output file '{target}': {e.strerror or e}") from e
    except BaseException:
        for name in claimed:
            # A failed removal must not replace the error that brought us here: a read-only
            # file system refuses even to remove a file it never let us create.
            with contextlib.suppress(OSError):
                name.unlink(missing_ok=True)
        raise


def refuse_overwriting_inputs(outputs: Iterable[str | os.PathLike],
                              inputs: Mapping[str | os.PathLike, str]) -> None:
    """Raise InputError when one of `outputs` is one of `inputs` (path → what it is, e.g.
    "photo"): the same file by name, symbolic link or hard link. Call it before the run, so
    nothing is computed for a result that may not be written; paths that do not exist yet
    cannot be an input."""
    known: dict[tuple[int, int], tuple[str | os.PathLike, str]] = {}
    for path, what in inputs.items():
        identity = _identity(path)
        if identity is not None:
            known.setdefault(identity, (path, what))
    for output in outputs:
        found = known.get(_identity(output))
        if found is not None:
            path, what = found
            raise InputError(f"output '{output}' is the {what} itself ('{path}'); writing the "
                             "result there would destroy it, so choose another output")


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """(device, inode) of the file `path` names after links, or None when there is none."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):  # missing, unreadable, or a name the OS refuses (a NUL)
        return None
    return status.st_dev, status.st_ino


def _create_temp(folder: Path, target: Path, claimed: list[Path]) -> Path:
    """Create the folder if needed and an empty, uniquely named hidden file in it, listing its
    name in `claimed` before creating it (a SIGTERM that lands between the two still finds it).

    The file is created with mode 0o666 so the process umask applies, as it would for a file
    written directly (``tempfile.mkstemp`` would make it 0o600, and ``os.replace`` keeps that).
    """
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot write output folder '{folder}': it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create output folder '{folder}' for '{target}': "
                         f"{e.strerror or e}") from e
    while True:
        tmp = folder / f".{target.stem}.tmp-{secrets.token_hex(4)}{target.suffix}"
        claimed.append(tmp)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            claimed.pop()  # another writer's file drew the same name; draw again
            continue
        except OSError as e:  # named after the user's file: the temporary one means nothing
            raise InputError(f"cannot write output file '{target}': {e.strerror or e}") from e
        os.close(fd)
        return tmp


def remove_leftovers(targets: Iterable[str | os.PathLike]) -> int:
    """Remove the temporary files `atomic_output` left beside `targets` when its process was
    killed outright (SIGKILL, a lost node: no cleanup runs); the number removed.

    Only hidden names of the form `_create_temp` makes for one of `targets` are touched; each
    folder is listed once, so a job's thousands of outputs cost one listing per folder.
    """
    folders: dict[Path, set[tuple[str, str]]] = {}
    for target in map(Path, targets):
        folders.setdefault(target.parent, set()).add((target.stem, target.suffix))
    removed = 0
    for folder, names in folders.items():
        try:
            entries = os.listdir(folder)
        except OSError:  # not created yet, or unreadable: nothing of ours is there
            continue
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry)
            if match and (match["stem"], match["suffix"]) in names:
                with contextlib.suppress(OSError):  # another cleaner got there first
                    (folder / entry).unlink()
                    removed += 1
    return removed


_TEMPORARY = re.compile(r"\.(?P<stem>.+)\.tmp-[0-9a-f]{8}(?P<suffix>(\.[^.]*)?)")
"""The name `_create_temp` gives the temporary file of a target `stem` + `suffix`."""
