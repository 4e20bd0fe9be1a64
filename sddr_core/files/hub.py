"""Hugging Face downloads, cache first: what was fetched once loads offline ever after."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def cache_first(fetch: Callable[..., str], usable: Callable[[Path], bool] = lambda path: True
                ) -> Path:
    """`fetch(local_files_only=True)` (a huggingface_hub download call) from the local cache;
    if that fails or its result is not `usable`, `fetch()` online. An online failure is
    raised for the caller to explain in its own terms."""
    try:
        path = Path(fetch(local_files_only=True))
        if usable(path):
            return path
    except Exception:  # not in the cache (huggingface_hub raises several types): fetch online
        pass
    return Path(fetch())
