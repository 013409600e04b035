"""Atlas entry ``many_classes``: softmax codes when K > d + 1 (docs/science.md §6.2).

The normalised UFM (features and classifier rows on the sphere, CE at temperature τ) against
temperature τ and the number of classes K, in dimension d = 3 and d = 4 (K from the last simplex
case K = d + 1 up). Statistic: the relative gap between the one-vs-rest distance ρ of the
trained classifier and the best ρ found by maximising it directly (the softmax-code objective);
reached (collapsed) below 2 %.
"""

from __future__ import annotations

from .entry import SIZES, AtlasEntry, Panel, sizes

__all__ = ["ENTRIES", "MANY_CLASSES"]

# explicit round values: a log grid's 12 long tick labels overlap on the axis
_TAU = sizes("0.02,0.5", "0.01,0.015,0.02,0.03,0.05,0.07,0.1,0.2,0.3,0.5,1,3", "0.005:5:20:log")
_K = {3: sizes("4,6", "4,5,6,7,8,9", "4,5,6,7,8,9,10,11,12,14,16"),
      4: sizes("5,6", "5,6,7,8,9,10", "5,6,7,8,9,10,11,12,14,16,20")}
# default: one sample per class (GNC1 is not the statistic) and 6 search starts, to fit 15 minutes
# small: 2 search starts (the direct search is ~3 s of CPU per (K, d) at 4 starts, measured)
_FIX = sizes({"per_class": 1, "starts": 2, "max_iter": 1500, "tol_grad": 1e-6},
             {"per_class": 1, "starts": 6},
             {"per_class": 4, "starts": 32, "max_iter": 20_000})


def _panel(d: int) -> Panel:
    grid = {k: {"tau": _TAU[k], "num_classes": _K[d][k]} for k in SIZES}
    return Panel(f"d{d}", "many_classes",
                 f"d = {d} (K ≤ {d + 1}: simplex); claim: a code at every point (τ → 0 limit, "
                 "no line)",
                 "tau", "num_classes", grid, {k: dict(v, dim=d) for k, v in _FIX.items()},
                 logx=True, vmax=0.2)


MANY_CLASSES = AtlasEntry(
    "many_classes", "Many classes (K > d + 1): does the normalised UFM reach a softmax code?",
    "direction regime (features and classifier rows on the unit sphere, CE at temperature τ, "
    "L-BFGS in float64 from one random start per seed): the relative gap (ρ_best − ρ_trained) / "
    "ρ_best of the one-vs-rest distance ρ(W) = min_k dist(w_k, conv of the others) of the "
    "trained classifier against the best ρ found by maximising ρ directly (6 random starts at the "
    "default size); "
    "collapsed (a softmax code reached) when below 0.02",
    "Jiang et al. (ICML 2024) prove the softmax code only in the limit τ → 0; no finite-τ "
    "boundary is stated, so the claim is tested as 'a code at every point' (no line lies inside "
    "the grid) and the agreement counts the points where it holds",
    (_panel(3), _panel(4)),
    sizes(1, 3, 5))

ENTRIES = (MANY_CLASSES,)
