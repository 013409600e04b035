"""Atlas entry ``pretrained``: backbone layer x weight decay -> output collapse of a head, with the
geometric rule of :mod:`meanfield.predictor` as the theory line; and its validation.

Each panel sweeps ``pretrained_head`` over (``data.layer``, ``flow.lam``) for one source data set
and one head (mean-field particles, finite two-layer nets of width 10 and 1000; ReLU and tanh).
The dashed line is THE RULE (committed before the runs): left of it / inside it the rule predicts
collapse. :func:`validate` reads an entry directory and writes ``validation.json`` and
``validation.md``: the confusion matrix, accuracy, balanced accuracy and base rates of the rule and
of the activation-only baseline over every run, and every disagreement with its numbers
(``python -m meanfield.atlas.pretrained DIR``).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

from .entry import SIZES, AtlasEntry, Panel, sizes

__all__ = ["ENTRIES", "PRETRAINED", "SOURCES", "HEAD_PANELS", "EPOCH_PANELS", "validate", "examine",
           "main"]

SOURCES = ("digits", "mnist1d")
#: (preset of meanfield.heads, activation) per panel
HEAD_PANELS = (("meanfield", "relu"), ("meanfield", "tanh"), ("w10", "relu"), ("w1000", "relu"),
               ("w1000", "tanh"))
#: heads of the layer x backbone-epochs panels
EPOCH_PANELS = (("w1000", "relu"), ("w1000", "tanh"))
_EPOCHS = sizes({"data.layer": "1,", "data.epochs": "5,"},
                {"data.layer": "0,1,2,3,4", "data.epochs": "0,3,60"},
                {"data.layer": "0,1,2,3,4", "data.epochs": "0,3,10,30,100,300"})
_TITLES = {"meanfield": "mean-field two-layer head (particles)", "w10": "two-layer head, width 10",
           "w1000": "two-layer head, width 1000"}
# small: one point per panel (the atlas test runs every entry at this size)
_GRID = sizes({"data.layer": "1,", "flow.lam": "0.001,"},
              {"data.layer": "0,1,2,3,4", "flow.lam": "1e-4,1e-3,1e-2"},
              {"data.layer": "0,1,2,3,4", "flow.lam": "1e-5:1e-1:5:log"})
_DATA = sizes({"data.per_class": 5, "data.epochs": 5},
              {"data.per_class": 30, "data.epochs": 60},
              {"data.per_class": 200, "data.epochs": 200})
_HEAD = sizes({"model.m": 20, "flow.t_end": 5.0, "train.epochs": 20},
              {"model.m": 200, "flow.t_end": 100.0, "train.epochs": 300},
              {"model.m": 3000, "flow.t_end": 2000.0, "train.epochs": 5000})


def _available(source: str) -> bool:
    from ..data import list_distributions
    return source in list_distributions()


def _panel(source: str, head: str, act: str) -> Panel:
    from ..experiments.pretrained_head import theory
    from ..heads import head_overrides
    fixed = {k: {"data.source": source, **head_overrides(head, activation=act), **_DATA[k],
                 **{kk: v for kk, v in _HEAD[k].items()
                    if kk != "model.m" or head == "meanfield"}} for k in SIZES}
    return Panel(f"{source}_{head}_{act}", "pretrained_head", f"{source}: {_TITLES[head]}, {act}",
                 "data.layer", "flow.lam", _GRID, fixed, theory=theory(act, source=source),
                 logy=True, vmax=1.0)


def _epochs_panel(source: str, head: str, act: str) -> Panel:
    """Layer x backbone training epochs at one weight decay (0 epochs: the random backbone)."""
    from ..experiments.pretrained_head import theory
    from ..heads import head_overrides
    fixed = {k: {"data.source": source, "flow.lam": 1e-3, **head_overrides(head, activation=act),
                 "data.per_class": _DATA[k]["data.per_class"],
                 **{kk: v for kk, v in _HEAD[k].items() if kk != "model.m" or head == "meanfield"}}
             for k in SIZES}
    return Panel(f"{source}_epochs_{head}_{act}", "pretrained_head",
                 f"{source}: {_TITLES[head]}, {act}; λ = 1e-3", "data.layer", "data.epochs",
                 _EPOCHS, fixed, theory=theory(act, source=source), vmax=1.0)


def _panels() -> tuple:
    srcs = [s for s in SOURCES if s == "digits" or _available(s)]
    return (tuple(_panel(s, h, a) for s in srcs for h, a in HEAD_PANELS)
            + tuple(_epochs_panel(s, h, a) for s in srcs for h, a in EPOCH_PANELS))


PRETRAINED = AtlasEntry(
    "pretrained",
    "Heads on frozen backbone features: layer × weight decay → output collapse",
    "bounded regime (weight decay λ > 0): NC1 of the head's outputs on the training features "
    "(output_statistic), collapsed below 0.05, at the end of a fixed budget (flow time / epochs)",
    "the dashed line is the geometric rule of docs/science.md §7.2 computed from the layer's "
    "class geometry (LPs) and the head's activation — a prediction committed before the runs, "
    "not a theorem; the rule's accuracy is in validation.md",
    _panels(),
    sizes(1, 3, 3))

ENTRIES = (PRETRAINED,)


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


def validate(entry_dir, entry: AtlasEntry = PRETRAINED, *, write: bool = True) -> dict:
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
        from ..record import write_json
        write_json(d / "validation.json", out)
        (d / "validation.md").write_text(_markdown(out))
    return out


def examine(entry_dir, *, factor: int = 4, size: str = "default", entry: AtlasEntry = PRETRAINED,
            per_panel: Optional[int] = None) -> dict:
    """Rerun every disagreement of :func:`validate` with a ``factor`` times longer horizon.

    Is the prediction wrong, or was the head not converged? Each disagreeing run is repeated
    (same point, same seed) with ``flow.t_end`` and ``train.epochs`` multiplied by ``factor``;
    ``longer_statistic`` and ``longer_collapsed`` are added to its entry, and
    ``flips`` counts the disagreements whose verdict moves to the prediction's side;
    ``per_panel`` examines at most that many per panel (None: all). Rewrites
    ``validation.json`` / ``validation.md``.
    """
    from ..study.rundir import run_experiment
    v = validate(entry_dir, entry, write=False)
    panels = {p.key: p for p in entry.panels}
    flips, seen, todo = 0, {}, []
    for x in v["disagreements"]:
        seen[x["panel"]] = seen.get(x["panel"], 0) + 1
        if per_panel is None or seen[x["panel"]] <= per_panel:
            todo.append(x)
    for x in todo:
        p = panels[x["panel"]]
        ov = dict(p.fixed[size])
        ov[p.x] = int(round(x["layer"]))
        ov[p.y] = x["lam"] if p.y == "flow.lam" else int(round(x.get("y", 0)))
        ov["flow.t_end"] = float(ov.get("flow.t_end", 100.0)) * factor
        ov["train.epochs"] = int(ov.get("train.epochs", 300)) * factor
        s = run_experiment(p.experiment, ov, seed=int(x["seed"]), write=False, progress=False).summary
        x["longer_statistic"] = s["output_statistic"]
        x["longer_collapsed"] = bool(s["output_collapsed"])
        x["longer_factor"] = factor
        flips += x["longer_collapsed"] == x["predicted_collapse"]
    v["examined"] = len(todo)
    v["flips"] = flips
    from ..record import write_json
    d = Path(entry_dir)
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
            txt += (f"; {x['longer_factor']}x longer: {x['longer_statistic']:.3g} ("
                    f"{'now agrees' if x['longer_collapsed'] == x['predicted_collapse'] else 'still disagrees'})")
        lines.append(txt)
    if "flips" in v:
        lines += ["", f"Examined {v['examined']} disagreements with a longer horizon: {v['flips']} "
                      "move to the predicted side (not converged), the others stay (the rule is wrong "
                      "there, at this budget)."]
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


if __name__ == "__main__":
    sys.exit(main())
