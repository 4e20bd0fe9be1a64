"""Error types that name what was wrong, so the CLI and the UI nodes can show them as-is."""


class SddrError(Exception):
    """Base class for every error sddr raises on purpose."""


class InputError(SddrError, ValueError):
    """A user-supplied file, array or argument is unusable; the message names it and says why."""


class WeightsError(SddrError):
    """A weights file is missing, corrupt, or built for another architecture."""
