"""A sweep directory's files: reading them (every file validated, a bad one named), its identity.

``sweep.json`` holds the sweep's *identity* (the experiment and the fixed parameters: the resolved
``--set`` values), the grids asked for so far and the options; ``points/<id>.json`` one finished
point each; ``results.csv`` the table rebuilt from the point files. See :mod:`meanfield.sweep`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping

from .record import read_history, write_history, write_json

__all__ = ["under_axis", "read_json", "read_points", "check_point", "rows", "write_table", "load_results",
           "read_spec", "check_identity", "check_points_identity", "update_spec", "plain", "FIRST"]

FIRST = ("id", "seed", "status", "error")


def plain(v):
    """A parameter value as JSON (tuples as lists, non-finite floats as their repr)."""
    if isinstance(v, (tuple, list)):
        return [plain(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def under_axis(key: str, axes) -> bool:
    """Whether ``key`` is a grid axis or a parameter of one (``data.noise`` under ``data``)."""
    return any(key == a or key.startswith(a + ".") for a in axes)


def read_json(path: Path, what: str,
              fix: str = "delete it (a point file is recomputed) or choose another --out"):
    """Parse a JSON file. Raises ValueError naming the file when it is unreadable or corrupt."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the {what} ({e})") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); it should hold the {what}: "
                         f"{fix}") from None


def check_point(rec, path: Path) -> dict:
    """Validate one point record. Raises ValueError naming the file and what is wrong."""
    if not isinstance(rec, dict):
        raise ValueError(f"{path} is not a sweep point (expected an object, found "
                         f"{type(rec).__name__}); delete it and re-run to recompute that point")
    need = {"id": str, "params": dict, "seed": int, "status": str, "summary": dict}
    for k, tp in need.items():
        if not isinstance(rec.get(k), tp) or (tp is int and isinstance(rec.get(k), bool)):
            raise ValueError(f"{path} is not a valid sweep point ({k!r} missing or not "
                             f"{tp.__name__}); delete it and re-run to recompute that point")
    if rec["status"] not in ("ok", "failed"):
        raise ValueError(f"{path}: status must be ok or failed, got {rec['status']!r}")
    if path.stem != rec["id"]:
        raise ValueError(f"{path}: holds point {rec['id']!r}, not {path.stem!r}; delete it")
    rec.setdefault("error", "")
    if not isinstance(rec["error"], str):
        raise ValueError(f"{path}: 'error' must be a string")
    return rec


def read_points(out: Path) -> dict[str, dict]:
    """Every ``points/*.json`` of a sweep directory, validated."""
    recs = {}
    for f in sorted((out / "points").glob("*.json")):
        r = check_point(read_json(f, "record of one sweep point"), f)
        recs[r["id"]] = r
    return recs


def _sort_key(rec: dict, order: list[str]):
    def k(v):
        if isinstance(v, bool):
            return (1, str(v))
        if isinstance(v, (int, float)) and math.isfinite(v):
            return (0, float(v))
        return (1, json.dumps(v, default=str))
    return tuple(k(rec["params"].get(p)) for p in order) + ((0, rec["seed"]),)


def rows(recs: Mapping[str, dict]) -> list[dict]:
    """Table rows: id, seed, status, error, every parameter, every summary number.

    Nothing about how a point was computed (batch, fallback, wall time) enters the table, so the
    table does not depend on how points were grouped.
    """
    if not recs:
        return []
    order: list[str] = []
    for r in recs.values():
        for k in r["params"]:
            if k not in order:
                order.append(k)
    out = []
    for r in sorted(recs.values(), key=lambda r: _sort_key(r, order)):
        row = {"id": r["id"], "seed": r["seed"], "status": r["status"], "error": r["error"]}
        for k, v in r["params"].items():
            row[k] = ",".join(map(str, v)) if isinstance(v, list) else v
        for k, v in r["summary"].items():
            row[k + "_result" if k in r["params"] or k in FIRST else k] = v
        out.append(row)
    return out


def write_table(out: Path, recs) -> list[dict]:
    """Rewrite ``results.csv`` (atomically) from the point records; returns it as read back."""
    rs = rows(recs)
    if rs:
        write_history(out / "results.csv", rs)
        return read_history(out / "results.csv")  # exactly what the table holds
    return rs


def load_results(out: str | Path) -> list[dict]:
    """A sweep directory's results.csv as rows (numbers as floats).

    Raises:
        FileNotFoundError: no results.csv.
        ValueError: a results.csv without the id/seed/status columns (named).
    """
    path = Path(out) / "results.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {out} a sweep directory (`meanfield sweep ... --out`)?")
    try:
        rs = read_history(path)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path} is not a readable CSV ({e})") from None
    if rs and not all(c in rs[0] for c in ("id", "seed", "status")):
        raise ValueError(f"{path} is not a sweep table (no id/seed/status columns)")
    return rs


def read_spec(out: Path) -> dict | None:
    """``sweep.json`` validated, or None when the directory has none."""
    path = out / "sweep.json"
    if not path.exists():
        return None
    spec = read_json(path, "sweep description (the experiment and its fixed parameters)",
                     "delete it; the next sweep on this directory rebuilds it and checks its "
                     "fixed parameters against the point files")
    if not isinstance(spec, dict) or not isinstance(spec.get("experiment"), str):
        raise ValueError(f"{path} is not a sweep description (expected an object with "
                         f"'experiment'); delete it or choose another --out")
    for k, tp in (("grids", list), ("axes", list), ("fixed", dict), ("base", dict)):
        if k in spec and not isinstance(spec[k], tp):
            raise ValueError(f"{path}: {k!r} must be a {tp.__name__}")
    return spec


def _show(v) -> str:
    return json.dumps(v)


def _same(a, b) -> bool:
    """Equal as the JSON a sweep stores (tuples and lists alike, key order ignored)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def check_identity(out: Path, spec: dict | None, name: str, fixed: Mapping[str, Any],
                   base: Mapping[str, Any], axes: list[str]) -> None:
    """Refuse a sweep whose experiment or fixed parameters differ from the directory's.

    The identity is the experiment and every parameter that is not a grid axis (now or then),
    resolved: the defaults with the ``--set`` values applied (``base``).

    Raises:
        ValueError: naming the difference and the two ways on.
    """
    if spec is None:
        return
    if spec["experiment"] != name:
        raise ValueError(f"{out} holds a sweep of {spec['experiment']!r}, not {name!r}; "
                         "choose another --out")
    old_base = spec.get("base")
    if old_base is None:  # an older sweep.json: compare what was set
        old_base = {**{k: plain(v) for k, v in base.items()}, **spec.get("fixed", {})}
    old_axes = {a.get("key") for a in spec.get("axes", []) if isinstance(a, dict)}
    diffs = []
    swept = set(axes) | old_axes
    for k in sorted(set(old_base) | set(base)):
        if under_axis(k, swept):
            continue
        then, now = old_base.get(k, "(absent)"), plain(base.get(k, "(absent)"))
        if not _same(then, now):
            how = "--set" if k in fixed or k in spec.get("fixed", {}) else "default"
            diffs.append(f"{k} = {_show(then)} there, {_show(now)} now ({how})")
    if diffs:
        raise ValueError(
            f"{out} holds a sweep of {name} with other fixed parameters ({'; '.join(diffs[:5])}"
            f"{'; ...' if len(diffs) > 5 else ''}); the fixed parameters are part of a sweep's "
            "identity: choose a new --out, or make the parameter a --grid axis")


def check_points_identity(out: Path, recs: Mapping[str, dict], base: Mapping[str, Any],
                          axes: list[str]) -> None:
    """Without ``sweep.json`` (deleted, or a sweep from before it existed), the point files are
    the identity: refuse a sweep whose fixed parameters differ from theirs (its rows would mix
    with theirs in results.csv).

    Raises:
        ValueError: naming the differing parameters and the two ways on.
    """
    diffs: dict[str, tuple] = {}
    for rec in recs.values():
        params = rec.get("params", {})
        for k in sorted(set(params) | set(base)):
            if under_axis(k, set(axes)) or k in diffs:
                continue
            then, now = params.get(k, "(absent)"), plain(base.get(k, "(absent)"))
            if not _same(then, now):
                diffs[k] = (then, now)
    if diffs:
        shown = "; ".join(f"{k} = {_show(a)} there, {_show(b)} now"
                          for k, (a, b) in list(diffs.items())[:5])
        raise ValueError(
            f"{out} has no sweep.json but holds {len(recs)} point(s) with other fixed parameters "
            f"({shown}{'; ...' if len(diffs) > 5 else ''}); their rows would mix with this "
            "sweep's: choose a new --out, or make the parameter a --grid axis")


def update_spec(out: Path, spec: dict | None, name: str, axes, fixed: Mapping[str, Any],
                base: Mapping[str, Any], seeds, opts: Mapping[str, Any]) -> dict:
    """Write sweep.json: identity (kept from the first run), this grid appended, axes merged."""
    spec = dict(spec or {"experiment": name, "grids": [], "axes": []})
    keys = [a.key for a in axes]
    spec.setdefault("fixed", {})
    spec["fixed"] = {**{k: v for k, v in spec["fixed"].items() if k not in keys},
                     **{k: plain(v) for k, v in fixed.items() if k not in keys}}
    spec["base"] = {k: plain(v) for k, v in base.items()}
    spec.setdefault("grids", []).append(
        {"axes": [{"key": a.key, "values": plain(list(a.values)), "log": a.log} for a in axes],
         "fixed": {k: plain(v) for k, v in fixed.items()}, "seeds": list(seeds), **opts,
         "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    known = {a["key"]: a for a in spec.get("axes", [])}
    for a in axes:
        known[a.key] = {"key": a.key, "log": a.log}
    spec["axes"] = [known[k] for k in dict.fromkeys([a["key"] for a in spec.get("axes", [])] + keys)]
    write_json(out / "sweep.json", spec)
    return spec
