"""The package's one on-disk cache folder (compiled numba kernels, trained backbones, features'
class geometries) and the switch of the result caches."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "results_cache_on", "RESULTS_CACHE_ENV"]

#: set to 0 to turn off the caches of computed results (trained backbones, class geometries)
RESULTS_CACHE_ENV = "MEANFIELD_BACKBONE_CACHE"


def cache_dir(name: str) -> Path:
    """``$MEANFIELD_CACHE_DIR/<name>``, by default ``$XDG_CACHE_HOME/meanfield/<name>`` or
    ``~/.cache/meanfield/<name>`` (not created here)."""
    root = os.environ.get("MEANFIELD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "meanfield")
    return Path(root) / name


def results_cache_on() -> bool:
    """False when ``MEANFIELD_BACKBONE_CACHE=0``: trained backbones and class geometries are then
    computed in every process and never written."""
    return os.environ.get(RESULTS_CACHE_ENV, "1") != "0"
