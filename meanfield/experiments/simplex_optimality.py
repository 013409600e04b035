"""Simplex symmetry is optimal (docs/science.md §3.1): minimise the CE risk over features in an R-ball.

For k classes, features ``z_1..z_k`` in the Euclidean ball of radius R in R^p (p = k) and a
classifier A of operator norm <= 1, the balanced cross-entropy risk
``(1/k) sum_i CE(A z_i, i)`` is minimised by projected gradient descent in float64 from
``starts`` independent random starts (Gaussian Z and A, then projected; every start is reported,
none is selected). The theory (:mod:`meanfield.theory.simplex`): the minimiser is a centred regular
simplex of radius R (pairwise cosines ``-1/(k-1)``, norms R, ``sum_i z_i = 0``), A is an isometry
on its span, and the optimal risk is ``log(1 + (k-1) exp(-R sqrt(k/(k-1))))``.

Method and its error. Projected gradient descent with a backtracking step (Armijo sufficient
decrease; the step grows by 1.25 after an accepted step and halves after a rejected one), the
projections being radial clipping of every z_i and clipping the singular values of A at 1. It stops
when the gradient mapping ``|x - P(x - eta0 grad)| / eta0`` (``eta0 = k / (2 (1 + R^2))``) falls
below ``tol_grad``, or when no start can decrease the risk any more in float64 (60 rejected steps in a
row), or after ``max_iter``. The risk is second order in the distance eps to the minimiser and the
geometry first order: a risk exact to float64 resolution (~1e-16) pins the geometry to about
``sqrt(1e-16 / mu)``, with mu the curvature of the softest direction (rescaling the logits), of
order ``exp(-R sqrt(k/(k-1)))``: ~1e-8 at R = 1 up to ~2e-7 at R = 4, k = 2..5 (measured worst:
2.6e-7 at k = 3, R = 4). Tolerances (worst over all starts, none selected):

- ``risk``: ``1e-12`` absolute: the float64 evaluation error of an O(1) risk is ~1e-16 and the
  optimisation error ``mu eps^2 / 2`` is below 1e-15 (measured worst: 2e-15);
- ``cosine`` (max over pairs of |cos + 1/(k-1)|), ``norm`` (max |norm(z_i)/R - 1|),
  ``centre`` (norm(mean z_i)/R) and ``isometry`` (max |s - 1| over the singular values s of A
  restricted to span(z)): ``1e-6``, 4x the float64-limited geometry error at the largest default
  radius. Radii much above 4 make mu tiny (R = 8: ~1e-10 for the geometry) and need float128-like
  precision: there the check fails, honestly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..theory.simplex import ce_risk, optimal_risk
from .registry import Experiment, ExperimentResult, RunContext, Science, agreement

RISK_TOL = 1e-12
GEOM_TOL = 1e-6


@dataclass(frozen=True)
class SimplexConfig:
    """Parameters of the simplex-optimality experiment.

    Attributes:
        num_classes: numbers of classes k (one minimisation per k and radius).
        radii: feature radii R.
        starts: random starts per (k, R) (all reported, none selected).
        tol_grad: stop when the gradient mapping is below this.
        max_iter: iteration cap per (k, R).
    """

    num_classes: tuple[int, ...] = (2, 3, 5)
    radii: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    starts: int = 4
    tol_grad: float = 1e-11
    max_iter: int = 200_000


def _project(Z: torch.Tensor, A: torch.Tensor, R: float) -> tuple[torch.Tensor, torch.Tensor]:
    n = Z.norm(dim=-1, keepdim=True)
    Z = Z * torch.clamp(R / n.clamp_min(1e-300), max=1.0)
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    A = U @ torch.diag_embed(S.clamp(max=1.0)) @ Vh
    return Z, A


def minimise(k: int, R: float, *, starts: int = 4, tol_grad: float = 1e-11, max_iter: int = 200_000,
             seed: int = 0) -> dict:
    """Projected gradient descent of the CE risk over (Z, A), ``starts`` random starts in a batch.

    Returns:
        dict with Z ((S, k, k)), A ((S, k, k)), risk ((S,)), iterations, gradient-mapping residual.
    """
    g = torch.Generator().manual_seed(int(seed) * 1000 + 17 * k + int(1000 * R))
    Z = torch.randn(starts, k, k, generator=g, dtype=torch.float64)
    A = torch.randn(starts, k, k, generator=g, dtype=torch.float64) / math.sqrt(k)
    Z, A = _project(Z, A, R)
    eta0 = k / (2.0 * (1.0 + R * R))                # global Lipschitz step: the residual's scale
    eta = torch.full((starts,), eta0, dtype=torch.float64)
    it, res, stalled = 0, float("inf"), 0
    while it < max_iter:
        Z.requires_grad_(True)
        A.requires_grad_(True)
        f = ce_risk(Z, A)
        gz, ga = torch.autograd.grad(f.sum(), (Z, A))
        with torch.no_grad():
            if it % 20 == 0:
                Zr, Ar = _project(Z - eta0 * gz, A - eta0 * ga, R)
                res = float(torch.sqrt(((Zr - Z) ** 2).sum((-1, -2)) + ((Ar - A) ** 2).sum((-1, -2))).max()) / eta0
                if res < tol_grad:
                    break
            e = eta[:, None, None]
            Zn, An = _project(Z - e * gz, A - e * ga, R)
            step2 = ((Zn - Z) ** 2).sum((-1, -2)) + ((An - A) ** 2).sum((-1, -2))
            fn = ce_risk(Zn, An)
            ok = fn <= f - 0.25 * step2 / eta            # sufficient decrease (strict)
            okm = ok[:, None, None]
            Z = torch.where(okm, Zn, Z).detach()
            A = torch.where(okm, An, A).detach()
            eta = torch.where(ok, eta * 1.25, eta * 0.5).clamp(eta0 * 1e-6, eta0 * 1e6)
            stalled = 0 if bool(ok.any()) else stalled + 1
        it += 1
        if stalled >= 60:       # float64 resolution of the risk reached by every start
            break
    with torch.no_grad():
        risk = ce_risk(Z, A)
    return {"Z": Z, "A": A, "risk": risk, "iterations": it, "residual": res}


def geometry(Z: torch.Tensor, A: torch.Tensor, R: float) -> dict:
    """Distances of one solution (Z (k, p), A (k, p)) to the centred simplex of radius R."""
    Z, A = Z.detach(), A.detach()
    k = Z.shape[0]
    n = Z.norm(dim=-1)
    C = (Z @ Z.T) / (n[:, None] * n[None, :])
    off = ~torch.eye(k, dtype=torch.bool)
    cos_err = float((C[off] + 1.0 / (k - 1)).abs().max())
    norm_err = float((n / R - 1).abs().max())
    centre = float(Z.mean(0).norm() / R)
    # A restricted to span(z): singular values of A Q, Q an orthonormal basis of the span
    U, S, _ = torch.linalg.svd(Z.T, full_matrices=False)
    Q = U[:, S > 1e-4 * S.max()]
    iso = float((torch.linalg.svdvals(A @ Q) - 1).abs().max())
    return {"cosine": cos_err, "norm": norm_err, "centre": centre, "isometry": iso,
            "span_dim": int(Q.shape[1])}


def run(cfg: SimplexConfig, ctx: RunContext) -> ExperimentResult:
    if cfg.starts < 1 or not cfg.num_classes or not cfg.radii:
        raise ValueError("need starts >= 1 and at least one number of classes and one radius")
    summary: dict = {}
    history = []
    for k in cfg.num_classes:
        for R in cfg.radii:
            sol = minimise(k, R, starts=cfg.starts, tol_grad=cfg.tol_grad, max_iter=cfg.max_iter,
                           seed=ctx.seed)
            theory = optimal_risk(k, R)
            geo = [geometry(sol["Z"][s], sol["A"][s], R) for s in range(cfg.starts)]
            risks = sol["risk"].tolist()
            worst = max(risks, key=lambda r: abs(r - theory))
            tag = f"k{k}_R{R:g}".replace(".", "p")
            agreement(summary, f"risk_{tag}", worst, theory, RISK_TOL)
            for key in ("cosine", "norm", "centre", "isometry"):
                agreement(summary, f"{key}_{tag}", max(g[key] for g in geo), 0.0, GEOM_TOL)
            summary[f"iterations_{tag}"] = sol["iterations"]
            summary[f"residual_{tag}"] = sol["residual"]
            for s in range(cfg.starts):
                history.append({"k": k, "R": R, "start": s, "risk": risks[s], "risk_theory": theory,
                                "risk_error": risks[s] - theory, **geo[s],
                                "iterations": sol["iterations"], "residual": sol["residual"]})
    return ExperimentResult(summary, history)


def plot(run) -> list[str]:
    """``risk_vs_R.png``: optimal risk and distance to the simplex against R, from the run's files."""
    import matplotlib.pyplot as plt
    import numpy as np
    cfg, history = run.config, [{k: (float(v) if k != "start" else v) for k, v in r.items()}
                                for r in run.history]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.4))
    Rs = np.geomspace(min(cfg.radii) / 1.5, max(cfg.radii) * 1.5, 200)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, k in enumerate(cfg.num_classes):
        c = colors[i % len(colors)]
        ax.plot(Rs, [optimal_risk(k, r) for r in Rs], color=c, lw=1.5,
                label=f"theory log(1 + (k−1)e^(−R√(k/(k−1)))), k = {k}")
        rows = [h for h in history if h["k"] == k]
        ax.scatter([h["R"] for h in rows], [h["risk"] for h in rows], color=c, edgecolor="k",
                   zorder=3, s=30, label=f"projected GD, k = {k} ({cfg.starts} starts each)")
        ax2.scatter([h["R"] for h in rows], [max(abs(h["risk_error"]), 1e-17) for h in rows],
                    color=c, edgecolor="k", s=30, label=f"|risk − theory|, k = {k}")
        geo = [max(h["cosine"], h["norm"], h["centre"], h["isometry"], 1e-17) for h in rows]
        ax2.scatter([h["R"] for h in rows], geo, color=c, marker="^", s=30,
                    label=f"geometry (max of cosine, norm, centre, isometry), k = {k}")
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    for a in (ax, ax2):
        a.set_xscale("log")
        a.set_xticks(list(cfg.radii))
        a.xaxis.set_major_formatter(ScalarFormatter())
        a.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yscale("log")
    ax.set_xlabel("feature radius R")
    ax.set_ylabel("minimal CE risk (nats)")
    ax.set_title("Optimal CE risk over the R-ball: measured vs theory")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    ax2.axhline(RISK_TOL, color="k", ls="--", lw=1, label=f"risk tolerance {RISK_TOL:g}")
    ax2.axhline(GEOM_TOL, color="0.4", ls=":", lw=1, label=f"geometry tolerance {GEOM_TOL:g}")
    ax2.set_yscale("log")
    ax2.set_ylim(1e-18, 1e-3)
    ax2.set_xlabel("feature radius R")
    ax2.set_ylabel("error (absolute)")
    ax2.set_title("Distance to the centred regular simplex, every start")
    ax2.legend(fontsize=6.5, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax2.grid(alpha=0.3, which="both")
    fig.tight_layout()
    run.savefig(fig, "risk_vs_R.png")
    return ["risk_vs_R.png"]


EXPERIMENT = Experiment(
    name="simplex_optimality",
    description="CE risk over features in an R-ball with an operator-norm-1 classifier: the minimiser "
                "is a centred regular simplex, risk log(1+(k-1)exp(-R sqrt(k/(k-1)))) (docs/science.md §3.1)",
    config=SimplexConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="min CE risk = log(1 + (k−1)·exp(−R·√(k/(k−1)))), attained at a centred regular simplex",
        source="docs/science.md §3.1; Wojtowytsch & E, On the emergence of simplex symmetry in the "
               "final and penultimate layers of neural network classifiers (MSML 2021)",
        regime="bounded",
        statistic=None,
        threshold=None,
        collapsed_below=True,
        theory=None,
        labels={"radii": "feature radius R (Euclidean ball)", "num_classes": "classes k",
                "risk": "minimal CE risk (nats)"}),
    small={"num_classes": (2, 3), "radii": (1.0, 2.0), "starts": 2},
)
