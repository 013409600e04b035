"""Atlas entry ``pretrained``: backbone layer x weight decay -> output collapse of a head, with the
geometric rule of :mod:`meanfield.predictor` as the theory line; and its validation.

Each panel sweeps ``pretrained_head`` over (``data.layer``, ``flow.lam``) for one source data set
and one head: mean-field particles (ReLU, tanh), finite two-layer nets of width 10, 100 and 1000
(ReLU; 1000 also tanh), MLP heads of depth 2 and 3 (width 256; depth 3 also tanh), on digits and
MNIST-1D; the width-10 000 head on digits only, on a coarse grid at the default size (layers 1, 3
x two decays: its cost is ten times width 1000's) and the full grid at ``--size large``. Further
panels sweep layer x backbone training epochs (0 = random) for the width-100 heads. The dashed
line is THE RULE (committed before the runs). Finite heads run in float32 (2.5x faster on a CPU;
the statistic agrees with float64 to 1e-5).

:func:`validate` reads an entry directory and writes ``validation.json`` and ``validation.md``:
the confusion matrix, accuracy, balanced accuracy and base rates of the rule and of the
activation-only baseline over every run, and every disagreement with its numbers;
:func:`examine` reruns every disagreement with a 4x longer horizon and classifies it
(:data:`CLASSES`) into ``examine.csv`` (``python -m meanfield.atlas.pretrained DIR [--examine]``).
"""

from __future__ import annotations

import sys

from .entry import SIZES, AtlasEntry, Panel, sizes

__all__ = ["ENTRIES", "PRETRAINED", "SOURCES", "HEAD_PANELS", "EPOCH_PANELS", "WIDE_PANELS",
           "validate", "examine", "classify", "main"]

SOURCES = ("digits", "mnist1d")
#: (preset of meanfield.heads, activation) per panel, on every source
HEAD_PANELS = (("meanfield", "relu"), ("meanfield", "tanh"), ("w10", "relu"), ("w1000", "relu"),
               ("w1000", "tanh"), ("w100", "relu"), ("deep2", "relu"), ("deep3", "relu"),
               ("deep3", "tanh"))
#: heads of the layer x backbone-epochs panels (width 100: a third of width 1000's cost)
EPOCH_PANELS = (("w100", "relu"), ("w100", "tanh"))
#: the width-10^4 head: digits only; at the default size a coarse grid (its cost is 10x w1000's)
WIDE_PANELS = (("w10000", "relu"),)
_EPOCHS = sizes({"data.layer": "1,", "data.epochs": "5,"},
                {"data.layer": "0,1,2,3,4", "data.epochs": "0,3,60"},
                {"data.layer": "0,1,2,3,4", "data.epochs": "0,3,10,30,100,300"})
_EPOCH_VALUES = (0, 3, 10, 30, 60, 100, 300)   # default and large backbone epochs (the line snaps)
_TITLES = {"meanfield": "mean-field two-layer head (particles)", "w10": "two-layer head, width 10",
           "w100": "two-layer head, width 100", "w1000": "two-layer head, width 1000",
           "w10000": "two-layer head, width 10 000", "deep2": "MLP head, 1 hidden layer of 256",
           "deep3": "MLP head, 2 hidden layers of 256"}
# small: one point per panel (the atlas test runs every entry at this size)
_GRID = sizes({"data.layer": "1,", "flow.lam": "0.001,"},
              {"data.layer": "0,1,2,3,4", "flow.lam": "1e-4,1e-3,1e-2"},
              {"data.layer": "0,1,2,3,4", "flow.lam": "1e-5:1e-1:5:log"})
_WIDE_GRID = sizes({"data.layer": "1,", "flow.lam": "0.001,"},
                   {"data.layer": "1,3", "flow.lam": "1e-4,1e-2"},
                   {"data.layer": "0,1,2,3,4", "flow.lam": "1e-5:1e-1:5:log"})
_DATA = sizes({"data.per_class": 5, "data.epochs": 5},
              {"data.per_class": 30, "data.epochs": 60},
              {"data.per_class": 200, "data.epochs": 200})
# finite heads in float32 (2.5x faster than float64 on a CPU; the statistic agrees to 1e-5)
_HEAD = sizes({"model.m": 20, "flow.t_end": 5.0, "train.epochs": 20},
              {"model.m": 200, "flow.t_end": 100.0, "train.epochs": 300},
              {"model.m": 3000, "flow.t_end": 2000.0, "train.epochs": 5000})


def _available(source: str) -> bool:
    from ..data import list_distributions
    return source in list_distributions()


def _head_fixed(head: str, size: str) -> dict:
    h = dict(_HEAD[size])
    if head == "meanfield":
        return h
    h.pop("model.m")
    return {**h, "dtype": "float32"}


def _panel(source: str, head: str, act: str, grid=_GRID) -> Panel:
    from ..experiments.pretrained_head import theory
    from ..heads import head_overrides
    fixed = {k: {"data.source": source, **head_overrides(head, activation=act), **_DATA[k],
                 **_head_fixed(head, k)} for k in SIZES}
    return Panel(f"{source}_{head}_{act}", "pretrained_head", f"{source}: {_TITLES[head]}, {act}",
                 "data.layer", "flow.lam", grid, fixed, theory=theory(act, source=source),
                 logy=True, vmax=1.0)


def _epochs_panel(source: str, head: str, act: str) -> Panel:
    """Layer x backbone training epochs at one weight decay (0 epochs: the random backbone)."""
    from ..experiments.pretrained_head import theory
    from ..heads import head_overrides
    fixed = {k: {"data.source": source, "flow.lam": 1e-3, **head_overrides(head, activation=act),
                 "data.per_class": _DATA[k]["data.per_class"], **_head_fixed(head, k)}
             for k in SIZES}
    return Panel(f"{source}_epochs_{head}_{act}", "pretrained_head",
                 f"{source}: {_TITLES[head]}, {act}; λ = 1e-3", "data.layer", "data.epochs",
                 _EPOCHS, fixed, theory=theory(act, snap={"data.epochs": _EPOCH_VALUES},
                                               source=source), vmax=1.0)


def _panels() -> tuple:
    srcs = [s for s in SOURCES if s == "digits" or _available(s)]
    return (tuple(_panel(s, h, a) for s in srcs for h, a in HEAD_PANELS)
            + tuple(_epochs_panel(s, h, a) for s in srcs for h, a in EPOCH_PANELS)
            + tuple(_panel("digits", h, a, _WIDE_GRID) for h, a in WIDE_PANELS))


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
from .pretrained_validation import (CLASSES, EXAMINE_FILE, _ex_key, _rerun, _rerun_overrides,  # noqa: E402,F401
                                    _risk_change, classify, examine, main, validate)

if __name__ == "__main__":
    sys.exit(main())
