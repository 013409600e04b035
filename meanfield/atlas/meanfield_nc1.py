"""Atlas entry ``meanfield_nc1``: NC1 in the mean-field three-layer network (docs/science.md §6.4).

One panel per data set: the weight decay of the measure λ (x) against that of the linear head λ_W
(y), NC1 = Tr Σ_W / Tr Σ_B of the features h(x) entering the head at the end of a fixed flow
budget (collapsed below 0.05). Wu & Mondelli prove NC1 is controlled by the residual loss and the
gradient norm but state no constant and no boundary in (λ, λ_W), so no line is drawn; the
experiment's own figure shows NC1 against loss + gradient norm along the flow.
"""

from __future__ import annotations

from .entry import SIZES, AtlasEntry, Panel, sizes

__all__ = ["ENTRIES", "MEANFIELD_NC1"]

_LAM = sizes("1e-3,1e-1", "1e-4:1e-1:12:log", "1e-5:1e-1:17:log")
_LAM_W = sizes("1e-3,1e-1", "1e-4:1e-1:6:log", "1e-5:1e-1:9:log")
_GRID = {k: {"flow.lam": _LAM[k], "flow.lam_W": _LAM_W[k]} for k in SIZES}
# one width per point (the experiment's own run covers several); float64 throughout. Default:
# 12 x 6 points x 3 seeds x 3 data sets at m = 64, t = 50 (measured 1.1-2.1 s of CPU per point,
# ~18 min of CPU: ~9 min with --workers 2); m = 128, t = 100 costs 3.4-10 s per point
_FIX = sizes({"widths": (16,), "per_class": 8, "records": 4, "flow.t_end": 10.0},
             {"widths": (64,), "per_class": 20, "records": 6, "flow.t_end": 50.0},
             {"widths": (4096,), "per_class": 100, "classes": 10, "p": 16, "records": 10,
              "flow.t_end": 1000.0, "flow.backend": "auto"})
_SETS = (("gaussian_mixture", "Gaussian mixture (3 classes, d = 5)"),
         ("digits", "digits 8×8 (classes 0–2, d = 64)"),
         ("mnist1d", "MNIST-1D (classes 0–2, d = 40)"))


def _panel(name: str, title: str) -> Panel:
    fixed = {k: dict(v, datasets=(name,)) for k, v in _FIX.items()}
    return Panel(name, "meanfield_nc1", title, "flow.lam", "flow.lam_W", _GRID, fixed,
                 theory=None, logx=True, logy=True, vmax=1.0)


MEANFIELD_NC1 = AtlasEntry(
    "meanfield_nc1",
    "Mean-field three-layer net with a trained linear head (MSE): NC1 of h(x) against the weight decays",
    "bounded regime (MSE with weight decay λ on the measure and λ_W on the head): NC1 = "
    "Tr Σ_W / Tr Σ_B of the features h(x) entering the head, after the flow budget t_end; "
    "collapsed when below 0.05 (colour saturates at 1)",
    "no line: Wu & Mondelli (ICML 2025) bound NC1 by the residual loss and gradient norm without a "
    "constant and give no boundary in (λ, λ_W); the measured ratio NC1 / (loss + gradient norm) "
    "is in the experiment's figure and summary (docs/science.md §6.4)",
    tuple(_panel(n, t) for n, t in _SETS),
    sizes(1, 3, 3))

ENTRIES = (MEANFIELD_NC1,)
