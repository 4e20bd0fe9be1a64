"""Error types that name what was wrong, so the CLI and the UI nodes can show them as-is."""

import reprlib


class SddrError(Exception):
    """Base class for every error sddr raises on purpose."""


class InputError(SddrError, ValueError):
    """A user-supplied file, array or argument is unusable; the message names it and says why."""


class WeightsError(SddrError):
    """A weights file is missing, corrupt, or built for another architecture."""


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxstring, _SHORT_REPR.maxother = 2, 80, 80
_SHORT_REPR.maxlist = _SHORT_REPR.maxtuple = _SHORT_REPR.maxdict = 6


def shown(value: object) -> str:
    """`value` as an error message repeats it: its repr cut short (two levels, six items, 80
    characters), so a hostile input (a YAML alias bomb: 300 bytes that print as 350 MB) cannot
    make the message itself the problem."""
    return _SHORT_REPR.repr(value)
