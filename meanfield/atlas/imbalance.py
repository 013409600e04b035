"""Atlas entry ``imbalance``: minority collapse against the imbalance ratio (docs/science.md §6.1).

K_A = 2 majority classes of n_A = ratio * n_B samples, K_B = 2 minority classes of n_B = 1; the
statistic is the largest cosine between minority classifiers (collapsed above 0.999).

- UFM (CE + weight decay λ = λ_W = λ_H), ratio × λ, with the threshold λ = √n_B / N as the
  theory line (derived in §6.1 from the nuclear-norm form, checked against the convex program);
- the layer-peeled model (norm budgets E = E_W = E_H), ratio × E: Fang et al.'s SDP (the global
  optimum) beside the optimised nonconvex model; Fang et al. prove collapse only in the limit
  ratio → ∞, so no line is drawn there;
- trained two-layer nets (mean-field and finite) on a Gaussian mixture with class masses ratio : 1,
  ratio × λ: measured after a fixed budget, no line.
"""

from __future__ import annotations

from .entry import SIZES, AtlasEntry, Panel, sizes

__all__ = ["ENTRIES", "IMBALANCE"]

# integer ratios: n_A = ratio * n_B samples exactly (a log grid would round to repeated n_A)
_RATIO = sizes("1,4,16", "1,2,3,4,6,8,12,16,24,32,48,64", "1,2,3,4,6,8,12,16,24,32,48,64,96,128,192,256")
_LAM = sizes("0.02,0.07", "3e-3:0.3:6:log", "1e-3:0.3:13:log")
_E = sizes("0.5,2", "0.25:4:6:log", "0.125:8:13:log")
_UFM_GRID = {k: {"ratio": _RATIO[k], "lam": _LAM[k]} for k in SIZES}
_LPM_GRID = {k: {"ratio": _RATIO[k], "E": _E[k]} for k in SIZES}
# mixtures: class masses ratio : 1 (no rounding), weight decay λ on every parameter
_MIX_GRID = {k: {"ratio": _RATIO[k], "flow.lam": _LAM[k]} for k in SIZES}
_OPT = sizes({"max_iter": 300, "tol_grad": 1e-7}, {}, {"tol_grad": 1e-10, "max_iter": 20_000})

IMBALANCE = AtlasEntry(
    "imbalance", "Class imbalance: minority collapse (K_A = 2 majority, K_B = 2 minority classes; UFM and LPM: n_B = 1)",
    "bounded regime (weight decay or norm budgets): the largest cosine between two minority "
    "classifiers w_b (rows of W; mean-field: the outer-weight columns a[:, b]), at the global "
    "optimum (UFM, LPM) or after a fixed training budget (mixtures); collapsed (minority collapse: "
    "the minority classifiers coincide) when above 0.999; grey where the optimum is W = 0 or has "
    "every minority classifier at 0 (below 1e-3 of the longest row: collapsed too, but without "
    "directions to compare)",
    "on the UFM panel the dashed line λ = √n_B / N (N = K_A n_A + K_B n_B) is the sharp threshold "
    "derived in docs/science.md §6.1 (the two-group threshold of Hong & Ling 2023, whose exact "
    "statement we could not retrieve, so it is our derivation, checked against the convex "
    "program); on the layer-peeled panels no line is drawn: Fang et al. (PNAS 2021) prove "
    "collapse only as n_A / n_B → ∞; nor on the mixture panels (no theorem for trained nets)",
    (Panel("ufm", "imbalance_ufm", "UFM, CE + weight decay (L-BFGS, float64)\ngrey: W = 0 or all minority w_b = 0",
           "ratio", "lam", _UFM_GRID, _OPT, logx=True, logy=True),
     Panel("lpm_sdp", "imbalance_lpm", "layer-peeled model: Fang et al.'s SDP (cvxpy, Clarabel)\ngrey: minority w_b = 0",
           "ratio", "E", _LPM_GRID, sizes({"method": "sdp"}, {"method": "sdp"}, {"method": "sdp"}),
           logx=True, logy=True),
     Panel("lpm_opt", "imbalance_lpm", "layer-peeled model optimised (L-BFGS on the norm spheres)\ngrey: minority w_b = 0",
           "ratio", "E", _LPM_GRID, {k: dict(v, method="optimised") for k, v in _OPT.items()},
           logx=True, logy=True),
     Panel("mix_meanfield", "imbalance_mixture", "mean-field two-layer ReLU on a Gaussian mixture "
           "(Wasserstein flow, t = 100)", "ratio", "flow.lam", _MIX_GRID,
           sizes({"model.m": 40, "n": 60, "flow.t_end": 10.0}, {}, {"model.m": 1000, "n": 2000}),
           logx=True, logy=True),
     Panel("mix_two_layer", "imbalance_mixture", "finite two-layer ReLU (width 64, full-batch Adam) "
           "on the same mixture", "ratio", "flow.lam", _MIX_GRID,
           sizes({"model": "two_layer", "model.width": 16, "n": 60, "train.epochs": 100},
                 {"model": "two_layer", "model.width": 64, "train.epochs": 500},
                 {"model": "two_layer", "model.width": 1024, "n": 2000, "train.epochs": 3000}),
           logx=True, logy=True)),
    sizes(1, 3, 5))

ENTRIES = (IMBALANCE,)
