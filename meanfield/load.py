"""Results as a pandas DataFrame: ``meanfield.load(DIR)`` for a run, a sweep or an atlas directory.

- a run directory (``config.json`` with ``"experiment"``): its ``history.csv``, with
  ``df.attrs["summary"]`` (summary.json) and ``df.attrs["config"]`` (config.json);
- a sweep directory (``results.csv``): one row per point and seed, numbers typed;
- an atlas directory (``DIR/<entry>/<panel key>/results.csv``): every panel's results
  concatenated, with ``entry`` and ``panel`` columns first.

Every file read is validated; a bad one is named in a ValueError.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["load"]


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); expected the {what}") from None


def _csv(path: Path):
    import pandas as pd

    from .record import check_csv
    check_csv(path)  # truncated or garbage: a ValueError naming the file, not fewer rows
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise ValueError(f"{path} is not a readable CSV ({e})") from None
    for c in df.columns:  # "True"/"False" columns as booleans
        if df[c].dtype == object and set(df[c].dropna().unique()) <= {"True", "False"} and df[c].notna().any():
            df[c] = df[c].map({"True": True, "False": False})
    return df


def _is_run(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.exists():
        return False
    rec = _read_json(cfg, "config of a run directory")
    return isinstance(rec, dict) and "experiment" in rec


def _run(path: Path):
    import pandas as pd
    rec = _read_json(path / "config.json", "config of a run directory")
    if not (path / "summary.json").exists():
        raise FileNotFoundError(f"{path / 'summary.json'} not found: the run is not finished "
                                "(re-run the same command to resume it)")
    summary = _read_json(path / "summary.json", "summary of a run (name: number)")
    if not isinstance(summary, dict):
        raise ValueError(f"{path / 'summary.json'} must hold an object of name: number")
    hist = path / "history.csv"
    df = _csv(hist) if hist.exists() else pd.DataFrame()
    df.attrs["summary"] = summary
    df.attrs["config"] = rec
    df.attrs["kind"] = "run"
    df.attrs["path"] = str(path)
    return df


def _sweep(path: Path):
    from .sweep_io import read_spec
    spec = read_spec(path)  # validated (a corrupt sweep.json is named)
    df = _csv(path / "results.csv")
    if len(df.columns) and not {"id", "seed", "status"} <= set(df.columns):
        raise ValueError(f"{path / 'results.csv'} is not a sweep table (no id/seed/status columns)")
    if "error" in df.columns:
        err = df["error"].astype(object)
        df["error"] = err.where(err.notna(), "").astype(str)
    df.attrs["kind"] = "sweep"
    df.attrs["path"] = str(path)
    df.attrs["sweep"] = spec or {}
    return df


def _atlas(path: Path):
    import pandas as pd
    frames = []
    for res in sorted(path.glob("*/*/results.csv")):
        panel, entry = res.parent.name, res.parent.parent.name
        df = _sweep(res.parent)
        df.insert(0, "panel", panel)
        df.insert(0, "entry", entry)
        frames.append(df)
    if not frames:
        raise FileNotFoundError(f"{path}: no DIR/<entry>/<panel>/results.csv found")
    out = pd.concat(frames, ignore_index=True, sort=False)
    out.attrs = {"kind": "atlas", "path": str(path)}
    return out


def load(path):
    """A run, sweep or atlas directory as a :class:`pandas.DataFrame`.

    Args:
        path: the directory.

    Returns:
        a DataFrame; ``df.attrs["kind"]`` is ``run``, ``sweep`` or ``atlas``. A run's has
        ``attrs["summary"]`` and ``attrs["config"]``; a sweep's ``attrs["sweep"]`` (sweep.json).

    Raises:
        FileNotFoundError: none of these kinds of directory (or an unfinished run).
        ValueError: a corrupt file, named.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory: give a run, sweep or atlas directory")
    if (path / "results.csv").exists():
        return _sweep(path)
    if _is_run(path):
        return _run(path)
    if any(path.glob("*/*/results.csv")):
        return _atlas(path)
    raise FileNotFoundError(f"{path} is not a run directory (config.json + summary.json), a sweep "
                            "directory (results.csv) or an atlas directory (<entry>/<panel>/results.csv)")
