"""Every registered experiment's summary.json, pinned before the study-layer redesign.

``tests/fixtures/summaries_small.json`` (default run) and ``summaries_default.json`` (``-m slow``)
were written by ``tests/fixtures/make_summaries.py`` on the code before the redesign, with the old
flat parameter names. ``fixtures/renames/NAME.json`` maps each old name of experiment NAME to its
new dotted key (``{"renames": {"t_end": "flow.t_end"}, "explained": {"key": "why it differs"}}``);
every numeric summary key except wall-clock and provenance must agree to 1e-12 (relative to
max(1, |value|)). A key listed under ``explained`` is excluded, with the reason written there; a
parameter added since is set by ``"added"`` to the value that reproduces the old behaviour; a
summary key whose quantity moved to a new key is compared there (``"moved"``).
"""

import json
import math
from pathlib import Path

import pytest

from meanfield.study import run_experiment

FIXTURES = Path(__file__).parent / "fixtures"
SKIP_KEYS = {"wall_seconds", "wall_s", "seconds"}



def _renames(name: str) -> dict:
    path = FIXTURES / "renames" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _new_overrides(name: str, old: dict) -> dict:
    """The old overrides under their new names, plus the values of parameters added since
    (``"added"`` in the renames file) that reproduce the old behaviour."""
    r = _renames(name)
    ren = r.get("renames", {})
    return {**r.get("added", {}), **{ren.get(k, k): v for k, v in old.items()}}


def _compare(name: str, got: dict, want: dict) -> list[str]:
    """Differences between a new summary and the pinned one. A key under ``"moved"`` in the renames
    file is compared under its new name (the old name now holds another quantity)."""
    bad = []
    moved = _renames(name).get("moved", {})
    got = {**got, **{old: got[new] for old, new in moved.items() if new in got}}
    for k, v in want.items():
        if k in SKIP_KEYS or k.endswith("_seconds") or k in _renames(name).get("explained", {}):
            continue
        if k not in got:
            bad.append(f"{k}: missing")
            continue
        g = got[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v is None:
            if g != v:
                bad.append(f"{k}: {g!r} != {v!r}")
        elif isinstance(v, float) and math.isnan(v):
            if not (isinstance(g, float) and math.isnan(g)):
                bad.append(f"{k}: {g!r} != nan")
        elif not abs(float(g) - v) <= 1e-12 * max(1.0, abs(v)):
            bad.append(f"{k}: {g!r} != {v!r} (diff {abs(float(g) - v):.3g})")
    return bad


def _cases(which: str):
    path = FIXTURES / f"summaries_{which}.json"
    if not path.exists():  # one failing case naming the missing file, not a collection error
        return [(f"missing {path.name}", {"overrides": {}, "summary": {"missing file": 1}})]
    return sorted(json.loads(path.read_text()).items())


@pytest.mark.parametrize("name,entry", _cases("small"), ids=lambda x: x if isinstance(x, str) else "")
def test_summary_equals_pinned_small(name, entry):
    res = run_experiment(name, _new_overrides(name, entry["overrides"]), write=False)
    bad = _compare(name, dict(res.summary), entry["summary"])
    assert not bad, f"{name}: " + "; ".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("name,entry", _cases("default"), ids=lambda x: x if isinstance(x, str) else "")
def test_summary_equals_pinned_default(name, entry):
    res = run_experiment(name, _new_overrides(name, entry["overrides"]), write=False)
    bad = _compare(name, dict(res.summary), entry["summary"])
    assert not bad, f"{name}: " + "; ".join(bad)
