"""The package's one on-disk cache folder (compiled numba kernels, trained backbones)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(name: str) -> Path:
    """``$MEANFIELD_CACHE_DIR/<name>``, by default ``$XDG_CACHE_HOME/meanfield/<name>`` or
    ``~/.cache/meanfield/<name>`` (not created here)."""
    root = os.environ.get("MEANFIELD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "meanfield")
    return Path(root) / name
