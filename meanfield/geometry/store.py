"""A :class:`~meanfield.geometry.ClassGeometry` as JSON, and a disk cache of computed geometries.

The class geometry of a feature set costs one LP per pair and per sample (seconds for ten classes
of a few hundred points). Sweep workers and the atlas page all ask for the geometry of the same
backbone layers; :func:`cached_geometry` computes each once per machine and keeps it as a JSON file
(numbers only: reading one runs no code). A file that cannot be read or does not describe a
geometry is recomputed and replaced; the file name hashes the description, a version and the
source of the modules that compute it, so a change of the LPs never reads an old result.
``MEANFIELD_BACKBONE_CACHE=0`` (:func:`meanfield.cache.results_cache_on`) turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Callable, Optional

from .classes import ClassGeometry, PairGeometry

__all__ = ["geometry_to_dict", "geometry_from_dict", "cached_geometry"]

_VERSION = 1
_PAIR_FIELDS = ("a", "b", "hulls_intersect", "separable", "margin", "frac_a_in_b", "frac_b_in_a",
                "verdict")


def geometry_to_dict(g: ClassGeometry) -> dict:
    """Plain JSON-ready fields of ``g``."""
    return {"pairs": [{k: getattr(p, k) for k in _PAIR_FIELDS} for p in g.pairs],
            "classes": list(g.classes), "counts": list(g.counts), "approx": bool(g.approx),
            "max_points": g.max_points}


def geometry_from_dict(d: dict) -> ClassGeometry:
    """The :class:`ClassGeometry` of :func:`geometry_to_dict`'s output.

    Raises:
        ValueError: a field is missing or of the wrong type.
    """
    try:
        pairs = []
        for p in d["pairs"]:
            if set(p) != set(_PAIR_FIELDS):
                raise ValueError(f"pair fields {sorted(p)}")
            pairs.append(PairGeometry(int(p["a"]), int(p["b"]), bool(p["hulls_intersect"]),
                                      bool(p["separable"]), float(p["margin"]),
                                      float(p["frac_a_in_b"]), float(p["frac_b_in_a"]),
                                      str(p["verdict"])))
        mp = d["max_points"]
        return ClassGeometry(tuple(pairs), tuple(int(c) for c in d["classes"]),
                             tuple(int(c) for c in d["counts"]), bool(d["approx"]),
                             None if mp is None else int(mp))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a class geometry: {e}") from None


@functools.lru_cache(maxsize=1)
def _code_hash() -> str:
    """Hash of the sources that compute a features geometry (the LPs and the features)."""
    from ..data import features
    from . import classes, hulls
    h = hashlib.sha1()
    for mod in (classes, hulls, features):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:12]


def _path(description: str) -> Optional[Path]:
    from ..cache import cache_dir, results_cache_on
    if not results_cache_on():
        return None
    import torch
    key = repr((description, torch.__version__, _VERSION, _code_hash()))
    return cache_dir("geometry") / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.json"


def cached_geometry(description: str, compute: Callable[[], tuple]) -> tuple:
    """``compute()`` = (ClassGeometry, extra int), read from or written to the disk cache.

    Args:
        description: everything the result depends on (e.g. the repr of a features spec whose
            backbone is trained, not read from a user's folder).
        compute: computes the (geometry, feature dimension) pair.
    """
    path = _path(description)
    if path is not None and path.is_file():
        try:
            d = json.loads(path.read_text())
            if d.get("description") == description:
                return geometry_from_dict(d["geometry"]), int(d["dim"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # damaged or foreign: recomputed and replaced below
    g, dim = compute()
    if path is not None:
        from ..record import atomic_write
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps({"description": description, "dim": int(dim),
                                           "geometry": geometry_to_dict(g)}))
        except OSError:
            pass  # a read-only cache folder costs time, not results
    return g, dim
