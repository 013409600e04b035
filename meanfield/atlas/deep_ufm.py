"""Atlas entry ``deep_ufm``: deep neural collapse against low rank (docs/science.md §6.3).

The deep UFM with ReLU and MSE, weight decay λ on every layer, swept over λ / λ_DNC(K, L) (the
weight decay relative to where the DNC optimum vanishes) and K, at depth L = 2, 3 and 4.
Statistic: the relative gap between the best objective found from random starts and the
closed-form DNC objective; DNC beaten below −10⁻³. Points whose best start neither reached the
gradient-norm tolerance nor beat DNC are grey (inconclusive).
"""

from __future__ import annotations

from .entry import SIZES, AtlasEntry, Panel, sizes

__all__ = ["ENTRIES", "DEEP_UFM"]

# explicit round values: a log grid's 12 long tick labels overlap on the axis
_LAM = sizes("0.1,0.9", "0.03,0.05,0.07,0.1,0.15,0.2,0.3,0.45,0.6,0.8,1,1.3", "0.01:1.5:20:log")
_K = sizes("2,4", "2,3,4,5,6,7", "2,3,4,5,6,7,8,10")
_GRID = {k: {"lam_frac": _LAM[k], "num_classes": _K[k]} for k in SIZES}
# default: 800 iterations per start (measured ~0.6 / 1.1 / 2.2 s of CPU per point at L = 2 / 3 / 4)
_FIX = sizes({"max_iter": 600}, {"max_iter": 800},
             {"starts": 8, "max_iter": 20_000, "per_class": 4, "width": 12})


def _panel(L: int) -> Panel:
    return Panel(f"L{L}", "deep_ufm", f"L = {L} layers (grey: not converged and DNC not beaten)",
                 "lam_frac", "num_classes", _GRID, {k: dict(v, layers=L) for k, v in _FIX.items()},
                 theory="reference:deep_ufm", logx=True)


DEEP_UFM = AtlasEntry(
    "deep_ufm", "Deep UFM (ReLU, MSE): is deep neural collapse optimal, or does low rank win?",
    "bounded regime (weight decay λ on every layer and on H₁): the relative gap (objective "
    "found − DNC objective) / DNC objective, the best of the random starts minimised by L-BFGS "
    "against the closed-form minimum over the DNC family; collapsed (DNC not beaten) when above "
    "−10⁻³ (a lower objective anywhere, converged or not, proves DNC is not optimal); grey "
    "where the best start neither reached the gradient tolerance 10⁻⁵ nor beat DNC",
    "the dashed line K = 2.5 (drawn only where L ≥ 3) is a reference, not a claim: our reading "
    "of Súkeník et al. 2024 ('beyond two layers or two classes DNC stops being optimal'); the "
    "exact (K, L, λ) conditions of its theorems could not be verified (docs/science.md §6.3)",
    tuple(_panel(L) for L in (2, 3, 4)),
    sizes(1, 3, 5))

ENTRIES = (DEEP_UFM,)
