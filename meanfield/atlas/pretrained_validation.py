"""Validation of the ``pretrained`` atlas entry: the rule's confusion matrix against the runs
(:func:`validate`) and every disagreement rerun with a longer horizon and classified
(:func:`examine`, :data:`CLASSES`, ``examine.csv``). ``python -m meanfield.atlas.pretrained DIR
[--examine]``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

from .entry import AtlasEntry

__all__ = ["validate", "examine", "classify", "CLASSES", "EXAMINE_FILE", "main"]


def _entry(entry: Optional[AtlasEntry]) -> AtlasEntry:
    """The entry to read (default: ``pretrained``, imported here: that module imports this one)."""
    if entry is not None:
        return entry
    from .pretrained import PRETRAINED
    return PRETRAINED


# ----------------------------------------------------------------------------- validation
def _flag(v) -> bool:
    """A boolean column of a results table (written True/False, read back as text or a number)."""
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "1.0")
    return bool(v) and not (isinstance(v, float) and math.isnan(v))


def _measured(row) -> Optional[bool]:
    v = row.get("output_statistic")
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return _flag(row.get("output_collapsed"))


def validate(entry_dir, entry: Optional[AtlasEntry] = None, *, write: bool = True) -> dict:
    """Score the rule (and the activation-only baseline) on every run of an entry directory.

    Args:
        entry_dir: ``ATLAS/pretrained`` (one sub-directory per panel, each a sweep).
        entry: the atlas entry whose panels to read.
        write: write ``validation.json`` and ``validation.md`` into ``entry_dir``.

    Returns:
        ``{"predictor_accuracy", "predictor_balanced_accuracy", "baseline_accuracy",
        "baseline_balanced_accuracy", "base_rate_collapsed", "rule": {confusion...},
        "baseline": {...}, "per_panel": {...}, "disagreements": [...]}``.

    Raises:
        ValueError: no finished run under ``entry_dir``.
    """
    from ..predictor import score
    entry = _entry(entry)
    from ..sweep import load_results
    d = Path(entry_dir)
    pred, base, meas, dis, per = [], [], [], [], {}
    for p in entry.panels:
        if not (d / p.key / "results.csv").exists():
            continue
        rows = [r for r in load_results(d / p.key) if r.get("status", "ok") == "ok"]
        pp, mm = [], []
        for r in rows:
            m, pr = _measured(r), _flag(r.get("predicted_collapse"))
            pred.append(pr)
            base.append(_flag(r.get("activation_only_prediction")))
            meas.append(m)
            pp.append(pr)
            mm.append(m)
            if m is not None and m != pr:
                dis.append({"panel": p.key, "layer": r.get("data.layer"), "lam": r.get("flow.lam"),
                            "y": r.get(p.y, math.nan),
                            "seed": r.get("seed"), "predicted_collapse": pr, "measured_collapse": m,
                            "output_statistic": r.get("output_statistic"),
                            "accuracy": r.get("accuracy"), "risk": r.get("risk"),
                            "geometry_separable": r.get("geometry_separable"),
                            "geometry_enclosed": r.get("geometry_enclosed"),
                            "geometry_max_inside": r.get("geometry_max_inside")})
        per[p.key] = score(pp, mm)
    if not pred:
        raise ValueError(f"no finished run under {d}: run `meanfield atlas --only {entry.name}` first")
    rule, bl = score(pred, meas), score(base, meas)
    out = {"predictor_accuracy": rule["accuracy"],
           "predictor_balanced_accuracy": rule["balanced_accuracy"],
           "baseline_accuracy": bl["accuracy"], "baseline_balanced_accuracy": bl["balanced_accuracy"],
           "base_rate_collapsed": rule["base_rate_collapsed"], "rule": rule, "baseline": bl,
           "per_panel": per, "disagreements": dis}
    if write:
        if (d / EXAMINE_FILE).exists():   # the classes of the disagreements already examined
            import csv
            with (d / EXAMINE_FILE).open() as f:
                return _attach_examined(d, out, {_ex_key(r): r for r in csv.DictReader(f)})
        from ..record import write_json
        write_json(d / "validation.json", out)
        (d / "validation.md").write_text(_markdown(out))
    return out


#: examine(): the classes of a disagreement after a longer rerun, in the order they are tested
CLASSES = {
    "flips": "not converged: the longer run reaches the predicted side",
    "borderline": "borderline: the longer run's statistic is within x1.5 of the threshold",
    "moving_toward": "not converged: the statistic moved > 20 % toward the predicted side",
    "wrong_moving_away": "prediction wrong: the statistic moved > 20 % away from the predicted side",
    "wrong_converged": "prediction wrong, converged: the statistic changed < 20 % over the longer "
                       "horizon and the risk < 1 % over its last quarter",
    "wrong_risk_moving": "prediction wrong at this budget: the statistic changed < 20 % but the "
                         "risk still moved > 1 % over the last quarter",
    "rerun_failed": "the longer run diverged (also at half the flow step) or its statistic is "
                    "undefined",
}
EXAMINE_FILE = "examine.csv"
_BAND, _MOVE, _RISK = 1.5, 0.2, 0.01


def classify(predicted: bool, before: float, after: float, risk_change: float,
             threshold: float = 0.05) -> str:
    """The class (a key of :data:`CLASSES`) of a disagreement rerun with a longer horizon.

    Args:
        predicted: the rule's verdict (True: collapse).
        before, after: the output statistic at the original and at the longer horizon.
        risk_change: relative change of the risk over the last quarter of the longer run.
        threshold: the statistic called collapsed below.
    """
    for name, v in (("before", before), ("after", after)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite statistic >= 0, got {v!r}")
    if (after < threshold) == bool(predicted):
        return "flips"
    if after > 0 and abs(math.log(after / threshold)) < math.log(_BAND):
        return "borderline"
    move = (after - before) / max(before, after, 1e-300)     # > 0: away from collapse
    toward = -move if predicted else move
    if toward > _MOVE:
        return "moving_toward"
    if toward < -_MOVE:
        return "wrong_moving_away"
    return "wrong_converged" if not risk_change > _RISK else "wrong_risk_moving"


def _risk_change(history: list) -> tuple[float, float]:
    """(relative change of the risk over the last quarter of the run, last gradient norm)."""
    rows = [r for r in history if isinstance(r.get("t"), (int, float))]
    if not rows:
        return math.nan, math.nan
    key = "risk" if "risk" in rows[-1] else "objective"
    T = rows[-1]["t"]
    early = min(rows, key=lambda r: abs(r["t"] - 0.75 * T))
    end = rows[-1][key]
    return abs(end - early[key]) / max(abs(end), 1e-300), float(rows[-1].get("grad_norm", math.nan))


def _rerun_overrides(p, x: dict, size: str, factor: int) -> dict:
    ov = dict(p.fixed[size])
    ov[p.x] = int(round(x["layer"]))
    ov[p.y] = x["lam"] if p.y == "flow.lam" else int(round(x.get("y", 0)))
    ov["flow.t_end"] = float(ov.get("flow.t_end", 100.0)) * factor
    ov["train.epochs"] = int(ov.get("train.epochs", 300)) * factor
    return ov


def _rerun(exp, p, chunk: list, size: str, factor: int) -> tuple[list, float]:
    """The longer runs of a chunk of disagreements (one batched flow for the mean-field head);
    a run that diverges over the longer horizon is retried once at half the step (the flow's
    ``flow.dt`` and the finite heads' ``train.lr``), then each system alone; None where a run
    still fails. Returns (results, the step factor used: 1 or 0.5)."""
    from ..divergence import DivergenceError
    from ..study.experiment import RunContext, resolve_config
    ov = [_rerun_overrides(p, x, size, factor) for x in chunk]
    c0 = resolve_config(exp, ov[0])
    dt, lr = float(c0.flow.dt), float(c0.train.lr)
    seeds = [int(x["seed"]) for x in chunk]

    def at(o, f):
        return resolve_config(exp, {**o, "flow.dt": dt * f, "train.lr": lr * f})
    for f in (1.0, 0.5):
        try:
            return exp.run_batch([at(o, f) for o in ov], seeds, RunContext(progress=False)), f
        except (DivergenceError, FloatingPointError, ValueError):
            continue
    out = []
    for o, sd in zip(ov, seeds):   # one by one: a diverging system does not sink the others
        try:
            out.append(exp.run_batch([at(o, 0.5)], [sd], RunContext(progress=False))[0])
        except (DivergenceError, FloatingPointError, ValueError):
            out.append(None)
    return out, 0.5


def _ex_key(x: dict) -> str:
    return f"{x['panel']}|{float(x['layer']):g}|{float(x['y']):g}|{float(x['seed']):g}"


def examine(entry_dir, *, factor: int = 4, size: str = "default", entry: Optional[AtlasEntry] = None,
            limit: Optional[int] = None) -> dict:
    """Rerun **every** disagreement of :func:`validate` with a ``factor`` times longer horizon and
    classify it (:func:`classify`, :data:`CLASSES`): prediction wrong and converged, head not
    converged, or borderline.

    Each disagreeing run is repeated (same point, same seed) with ``flow.t_end`` and
    ``train.epochs`` times ``factor``; the mean-field reruns of one panel and layer go as one
    batched flow. Every finished rerun is appended to ``examine.csv`` at once (panel, layer, y,
    seed, prediction, the statistic before and after, the risk's relative change over the last
    quarter of the rerun, the gradient norm at its end (finite heads), the class), so an
    interrupted examination resumes where it stopped. ``limit``: rerun at most that many new
    ones now. Rewrites ``validation.json`` / ``validation.md`` with the class counts.
    """
    import csv
    import time
    from ..experiments import get_experiment
    entry = _entry(entry)
    d = Path(entry_dir)
    v = validate(d, entry, write=False)
    panels = {p.key: p for p in entry.panels}
    path = d / EXAMINE_FILE
    fields = ["panel", "layer", "y", "lam", "seed", "predicted_collapse", "statistic",
              "longer_statistic", "factor", "step_factor", "risk_change_last_quarter", "grad_norm_end",
              "class", "cpu_seconds"]
    done = {}
    if path.exists():   # resume; failed reruns are retried, an older table gets today's columns
        with path.open() as f:
            rd = csv.DictReader(f)
            old, rows = rd.fieldnames, list(rd)
        done = {_ex_key(r): r for r in rows if r.get("class") != "rerun_failed"}
        if old != fields or len(done) < len(rows):
            with path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
                w.writeheader()
                w.writerows(done.values())
    todo = [x for x in v["disagreements"] if _ex_key(x) not in done]
    groups: dict = {}
    for x in todo:   # one batched flow per (panel, layer, y of an epochs panel)
        p = panels[x["panel"]]
        g = (x["panel"], x["layer"], x["y"] if p.y != "flow.lam" else None)
        groups.setdefault(g, []).append(x)
    # round robin over the panels (each panel's first group, then each one's second, ...): an
    # interrupted examination has looked at every panel
    rank: dict = {}
    for g in groups:
        rank[g] = sum(h[0] == g[0] for h in rank)
    groups = {g: groups[g] for g in sorted(groups, key=lambda g: rank[g])}
    exp = get_experiment("pretrained_head") if todo else None
    new = not path.exists()
    count = 0
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        for g, xs in groups.items():
            if limit is not None and count >= limit:
                break
            p = panels[g[0]]
            batch = p.fixed[size].get("model") == "meanfield"
            for chunk in ([xs] if batch else [[x] for x in xs]):
                if limit is not None and count >= limit:
                    break
                t0 = time.process_time()
                res, step = _rerun(exp, p, chunk, size, factor)
                cpu = (time.process_time() - t0) / len(chunk)
                for x, r in zip(chunk, res):
                    rc, gn = _risk_change(r.history) if r is not None else (math.nan, math.nan)
                    after = r.summary["output_statistic"] if r is not None else math.nan
                    ok = r is not None and math.isfinite(after)
                    row = {"panel": x["panel"], "layer": x["layer"], "y": x["y"], "lam": x["lam"],
                           "seed": x["seed"], "predicted_collapse": x["predicted_collapse"],
                           "statistic": x["output_statistic"], "longer_statistic": after,
                           "factor": factor, "step_factor": step, "risk_change_last_quarter": rc,
                           "grad_norm_end": gn,
                           "class": classify(x["predicted_collapse"], float(x["output_statistic"]),
                                             float(after), rc) if ok else "rerun_failed",
                           "cpu_seconds": round(cpu, 2)}
                    w.writerow(row)
                    done[_ex_key(x)] = row
                    count += 1
                f.flush()
    return _attach_examined(d, v, done)


def _attach_examined(d: Path, v: dict, done: dict) -> dict:
    from ..record import write_json
    counts = {c: 0 for c in CLASSES}
    for x in v["disagreements"]:
        r = done.get(_ex_key(x))
        if r is None:
            continue
        x["longer_statistic"] = float(r["longer_statistic"] or "nan")
        x["longer_factor"] = int(float(r["factor"]))
        x["class"] = r["class"]
        counts[r["class"]] += 1
    v["examined"] = sum(counts.values())
    v["classes"] = counts
    v["flips"] = counts["flips"]
    write_json(d / "validation.json", v)
    (d / "validation.md").write_text(_markdown(v))
    return v


def _markdown(v: dict) -> str:
    r, b = v["rule"], v["baseline"]
    lines = ["# The geometric rule against the runs", "",
             f"Runs scored: {r['n']} (undefined statistic: {r['undefined']}); measured collapse "
             f"in {r['tp'] + r['fn']} ({100 * v['base_rate_collapsed']:.0f} %).", "",
             "| | predicted collapse, measured collapse | predicted collapse, not | predicted none, "
             "collapsed | predicted none, not | accuracy | balanced accuracy |",
             "|---|---|---|---|---|---|---|"]
    for name, s in (("geometric rule", r), ("activation only (ReLU ⇒ no collapse)", b)):
        lines.append(f"| {name} | {s['tp']} | {s['fp']} | {s['fn']} | {s['tn']} | "
                     f"{s['accuracy']:.3f} | {s['balanced_accuracy']:.3f} |")
    lines += ["", "Per panel (rule):", ""]
    for k, s in v["per_panel"].items():
        lines.append(f"- {k}: accuracy {s['accuracy']:.3f} over {s['n']} runs "
                     f"(tp {s['tp']}, fp {s['fp']}, fn {s['fn']}, tn {s['tn']})")
    lines += ["", f"Disagreements: {len(v['disagreements'])}", ""]
    for x in v["disagreements"]:
        txt = (f"- {x['panel']}, layer {x['layer']:g}, λ = {x['lam']:g}, y = {x['y']:g}, seed "
               f"{x['seed']:g}: predicted {'collapse' if x['predicted_collapse'] else 'none'}, output "
               f"statistic {x['output_statistic']:.3g}, training accuracy {x['accuracy']:.3f}")
        if "longer_statistic" in x:
            txt += f"; {x['longer_factor']}x longer: {x['longer_statistic']:.3g} ({x['class']})"
        lines.append(txt)
    if "classes" in v:
        lines += ["", f"Examined {v['examined']} of {len(v['disagreements'])} disagreements with a "
                      f"longer horizon (table: {EXAMINE_FILE}):", ""]
        lines += [f"- {c}: {n} ({CLASSES[c]})" for c, n in v["classes"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """``python -m meanfield.atlas.pretrained ATLAS/pretrained [--examine]``: print and write the
    validation (``--examine``: rerun the disagreements with a 4x longer horizon first)."""
    args = list(sys.argv[1:] if argv is None else argv)
    longer = "--examine" in args
    args = [a for a in args if a != "--examine"]
    if len(args) != 1:
        print("usage: python -m meanfield.atlas.pretrained ATLAS_DIR/pretrained [--examine]",
              file=sys.stderr)
        return 2
    v = examine(args[0]) if longer else validate(args[0])
    print(_markdown(v))
    return 0
