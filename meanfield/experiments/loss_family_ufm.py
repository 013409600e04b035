"""loss_family, the UFM part: the optimum on the simplex-ETF family and the random starts.

The theory and the criteria are stated in :mod:`meanfield.experiments.loss_family` (docs/science.md
§5.2): :func:`etf_optimum` solves the 1-D problem in the logit gap t; :func:`ufm_part` fits
``starts`` UFMs per loss (:func:`meanfield.deep.ufm.fit_ufm`), all kept, and writes the summary keys
``frac_etf_<loss>``, ``normW_<loss>``, ``value_<loss>`` (with their theory) and the worst criteria.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .registry import RunContext, agreement

if TYPE_CHECKING:
    from .loss_family import LossFamilyConfig

LOSSES = ("cross_entropy", "label_smoothing", "focal", "mse")
SHORT = {"cross_entropy": "CE", "label_smoothing": "LS", "focal": "FL", "mse": "MSE"}
PROVED = ("cross_entropy", "label_smoothing", "mse")  # benign global landscape in the UFM
CRITERIA = ("nc1", "nc2_etf_w", "nc3", "gram_err")


# --- theory on the simplex-ETF family -------------------------------------------------------------

def loss_of_gap(loss: str, t, K: int, *, smoothing: float = 0.1, focal_gamma: float = 2.0):
    """l(t): the loss of a sample of class 0 with logits (t(K-1)/K, -t/K, ..., -t/K).

    Args:
        t ((m,) Tensor, float64): logit gaps. Returns the (m,) losses (CE-type losses only).
    """
    from ..deep.ufm import focal_loss, label_smoothing_loss
    z = torch.cat([(t * (K - 1) / K)[:, None], (-t / K)[:, None].expand(-1, K - 1)], dim=1)
    y = torch.zeros(len(t), dtype=torch.long)
    if loss == "label_smoothing":
        return label_smoothing_loss(z, y, smoothing)
    if loss == "focal":
        return focal_loss(z, y, focal_gamma)
    if loss == "cross_entropy":
        return label_smoothing_loss(z, y, 0.0)
    raise ValueError(f"loss_of_gap covers cross_entropy, label_smoothing, focal; got {loss!r}")


def etf_optimum(loss: str, K: int, n: int, lam_w: float, lam_h: float, *, smoothing: float = 0.1,
                focal_gamma: float = 2.0) -> dict:
    """The optimum of the UFM on the simplex-ETF family (module docstring).

    Returns:
        ``{"t": t*, "value": g(t*), "normW": |W|_F, "kmu_threshold": K mu beyond which t* = 0}``.
    """
    mu = math.sqrt(n * lam_w * lam_h)
    if loss == "mse":
        from ..theory.ufm import mse_ufm
        s = mse_ufm(K, n, lam_w, lam_h, bias="free")
        return {"t": float("nan"), "value": float(s.value), "normW": math.sqrt(max(s.norm_W2, 0.0)),
                "kmu_threshold": 1.0}
    kw = dict(smoothing=smoothing, focal_gamma=focal_gamma)

    def g(t, m: float):
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
        return loss_of_gap(loss, t, K, **kw) + (K - 1) * m * t

    def on_grid(m: float):  # t* <~ log(1/mu) + O(1): the grid reaches well beyond it
        grid = torch.linspace(0.0, 20.0 + 2.0 * abs(math.log(max(m, 1e-300))), 4001,
                              dtype=torch.float64)
        return grid, g(grid, m)

    def argmin(m: float) -> tuple[float, float]:
        grid, v = on_grid(m)
        i = int(torch.argmin(v))
        if i == 0:
            return 0.0, float(v[0])
        for _ in range(5):  # zoom into the bracketing cells: each pass shrinks them 500-fold
            lo, hi = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])
            grid = torch.linspace(lo, hi, 1001, dtype=torch.float64)
            vals = g(grid, m)
            i = int(torch.argmin(vals))
        t, gt = float(grid[i]), float(vals[i])
        return (t, gt) if gt < float(v[0]) else (0.0, float(v[0]))

    t, v = argmin(mu)
    t0 = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    slope0 = float(torch.autograd.grad(loss_of_gap(loss, t0, K, **kw).sum(), t0)[0])  # l'(0)
    # |l'(t)| <= 1 + gamma/e for CE, LS and FL, so g increases for (K-1) mu beyond it
    lo, hi = 0.0, (1.0 + focal_gamma / math.e) / (K - 1)
    for _ in range(50):  # bisection on "some t > 0 has g(t) < g(0)": g'(0) < 0, or on the grid
        mid = 0.5 * (lo + hi)
        drops = slope0 + (K - 1) * mid < 0
        if not drops:
            _, vals = on_grid(mid)
            drops = bool((vals[1:] < vals[0]).any())
        lo, hi = (mid, hi) if drops else (lo, mid)
    return {"t": t, "value": v, "normW": math.sqrt((K - 1) * t * math.sqrt(n * lam_h / lam_w)),
            "kmu_threshold": K * lo}


# --- the random starts -----------------------------------------------------------------------------

def _fit(cfg: LossFamilyConfig, loss: str, seed: int, device):
    from ..deep.ufm import UFMConfig, fit_ufm
    kw = dict(lW=cfg.lam_w, lH=cfg.lam_h, feature_dim=cfg.feature_dim, tol_grad=cfg.tol_grad,
              max_iter=cfg.max_iter, init_scale=cfg.init_scale, seed=seed,
              smoothing=cfg.smoothing, focal_gamma=cfg.focal_gamma)
    if loss == "mse":
        return fit_ufm(cfg.num_classes, cfg.per_class, UFMConfig(loss="mse", bias="free", **kw),
                       device=device)
    return fit_ufm(cfg.num_classes, cfg.per_class,
                   UFMConfig(loss=loss, bias="regularised", lb=cfg.lam_b, **kw), device=device)


def _start_row(cfg: LossFamilyConfig, loss: str, start: int, res) -> dict:
    from ..metrics import DegenerateMeansError, neural_collapse
    K = cfg.num_classes
    row = {"part": "ufm", "loss": loss, "start": start, "normW": float(res.W.norm()),
           "value": res.value, "grad_norm": res.grad_norm, "converged": float(res.converged)}
    try:
        nc = neural_collapse(res.H.T, res.labels, classifier=res.W, bias=res.b)
        vals = {"nc1": nc.nc1, "nc2_etf_w": nc.nc2_etf_w, "nc3": nc.nc3,
                "gram_ortho_w": nc.gram_ortho_w}
    except DegenerateMeansError:  # the trivial optimum: no geometry
        vals = {}
    for k in ("nc1", "nc2_etf_w", "nc3", "gram_ortho_w"):
        row[k] = float("nan") if vals.get(k) is None else float(vals[k])
    row["gram_err"] = abs(row["gram_ortho_w"] - math.sqrt(2 - 2 * math.sqrt((K - 1) / K)))
    row["etf"] = float(all(row[k] < cfg.etf_tol for k in CRITERIA))  # NaN compares False
    return row


def ufm_part(cfg: LossFamilyConfig, ctx: RunContext, summary: dict) -> list[dict]:
    """Fit ``cfg.starts`` UFMs per loss, write their summary keys into ``summary``; the start rows."""
    K, n = cfg.num_classes, cfg.per_class
    kmu = K * math.sqrt(n * cfg.lam_w * cfg.lam_h)
    summary["kmu"] = kmu
    rows = []
    for loss in cfg.losses:
        th = etf_optimum(loss, K, n, cfg.lam_w, cfg.lam_h, smoothing=cfg.smoothing,
                         focal_gamma=cfg.focal_gamma)
        if abs(kmu / th["kmu_threshold"] - 1) <= cfg.band:
            raise ValueError(f"K mu = {kmu:.4g} is within band={cfg.band} of the collapse-to-zero "
                             f"threshold {th['kmu_threshold']:.4g} of {loss} (ill-conditioned); "
                             "move lam_w / lam_h away from it")
        got = [_start_row(cfg, loss, s, _fit(cfg, loss, ctx.seed + s, ctx.device))
               for s in range(cfg.starts)]
        rows += got
        s = SHORT[loss]
        frac = sum(r["etf"] for r in got) / len(got)
        if loss in PROVED:
            agreement(summary, f"frac_etf_{s}", frac, 1.0, 0.0)
        else:
            summary[f"frac_etf_{s}"] = frac
        worst = max(got, key=lambda r: abs(r["normW"] - th["normW"]))
        agreement(summary, f"normW_{s}", worst["normW"], th["normW"], cfg.norm_tol)
        worst = max(got, key=lambda r: abs(r["value"] - th["value"]))
        agreement(summary, f"value_{s}", worst["value"], th["value"], 1e-7, relative=True)
        summary[f"kmu_threshold_{s}"] = th["kmu_threshold"]
        summary[f"trivial_theory_{s}"] = kmu >= th["kmu_threshold"]
        for k in CRITERIA:
            summary[f"{k}_max_{s}"] = max(r[k] for r in got)
        summary[f"converged_{s}"] = sum(r["converged"] for r in got) / len(got)
    summary["frac_etf_min"] = min(summary[f"frac_etf_{SHORT[l]}"] for l in cfg.losses)
    return rows
