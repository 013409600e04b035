"""Many classes, K > d + 1: does the normalised UFM reach a softmax code? (docs/science.md §6.2)

Jiang et al. (ICML 2024, arXiv 2310.05351): with features and classifier rows on the unit sphere
and cross-entropy at temperature tau, as tau -> 0 the classifier of a global minimiser approaches
a *softmax code*, an arrangement maximising the one-vs-rest distance
``rho(W) = min_k dist(w_k, conv{w_j : j != k})`` (:mod:`meanfield.theory.softmax_code`; not the
smallest pairwise angle). Where K <= d + 1 the code is the simplex ETF; beyond it no ETF exists.

One point: balanced classes, ``num_classes`` = K, ``per_class`` = n, features in R^d
(``dim`` = d); the normalised UFM

.. math::

    \\min_{W, H}\\ \\frac1N \\sum_i \\mathrm{CE}\\big(W h_i / \\tau,\\ y_i\\big),\\qquad
    \\|w_k\\| = \\|h_i\\| = 1,

parametrised by ``w = v / |v|``, ``h = g / |g|`` and minimised by L-BFGS (float64) from a random
start (the run's seed) in the form ``tau log(mean CE)`` (the same critical points; the CE itself
underflows as tau -> 0 and its gradient vanishes long before the code is reached) until the
Riemannian gradient norm of that function (projected on the tangent spaces of the spheres) is
below ``tol_grad``. Then

- ``rho_trained`` = rho of the trained W (exact, with a duality certificate);
- ``rho_best`` = the best rho found by maximising rho directly (``starts`` random starts,
  :func:`meanfield.theory.softmax_code.optimise_code`; seed 0, independent of the run's seed,
  cached per (K, d) within a process);
- ``rho_known`` = the known optimum (simplex for K <= d + 1, circle for d = 2), NaN elsewhere,
  with ``rho_best`` checked against it (``rho_best_agrees``, tolerance ``known_tol``);
- ``rel_gap`` = (rho_best - rho_trained) / rho_best, the statistic: the trained classifier is
  called a softmax code when ``rel_gap < 0.02`` (negative: training beat the direct search);
- ``angle_trained``, ``angle_best``: smallest pairwise angles (degrees; the Tammes objective),
  ``feature_spread``: mean distance of a feature to its class mean (GNC1), ``tau_log_ce`` (the
  minimised value), ``grad_norm``, ``converged``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from ..threads import torch_threads
from .registry import Experiment, ExperimentResult, RunContext, Science, Theory, agreement


@dataclass(frozen=True)
class ManyClassesConfig:
    """Parameters.

    Attributes:
        num_classes: K, classes (>= 2).
        dim: d, dimension of features and classifier rows (>= 2).
        per_class: n, samples per class.
        tau: temperature of the cross-entropy (logits are cosines / tau).
        tol_grad: optimiser stop: Riemannian gradient norm.
        max_iter: optimiser stop: L-BFGS iterations.
        starts: random starts of the direct search for the code.
        known_tol: tolerance of rho_best against a known optimum (absolute).
        threshold: rel_gap below this calls the trained classifier a softmax code.
    """

    num_classes: int = 6
    dim: int = 3
    per_class: int = 2
    tau: float = 0.05
    tol_grad: float = 1e-7
    max_iter: int = 3000
    starts: int = 8
    known_tol: float = 1e-4
    threshold: float = 0.02


def check(cfg: ManyClassesConfig) -> None:
    """ValueError naming the bad parameter and its valid range."""
    if not (isinstance(cfg.num_classes, int) and cfg.num_classes >= 2):
        raise ValueError(f"num_classes must be an integer >= 2, got {cfg.num_classes!r}")
    if not (isinstance(cfg.dim, int) and cfg.dim >= 2):
        raise ValueError(f"dim must be an integer >= 2, got {cfg.dim!r}")
    if not (isinstance(cfg.per_class, int) and cfg.per_class >= 1):
        raise ValueError(f"per_class must be an integer >= 1, got {cfg.per_class!r}")
    if not (math.isfinite(cfg.tau) and cfg.tau > 0):
        raise ValueError(f"tau must be a finite temperature > 0, got {cfg.tau!r}")
    if not (isinstance(cfg.starts, int) and cfg.starts >= 1):
        raise ValueError(f"starts must be an integer >= 1, got {cfg.starts!r}")
    if not (math.isfinite(cfg.tol_grad) and cfg.tol_grad > 0):
        raise ValueError(f"tol_grad must be > 0, got {cfg.tol_grad!r}")


def fit_sphere_ufm(K: int, d: int, n: int, tau: float, *, seed: int, tol_grad: float,
                   max_iter: int):
    """The normalised CE UFM from a random start; returns ``(W (K, d), H (N, d), labels,
    tau log(mean CE), its Riemannian gradient norm, iterations)``."""
    import torch
    from torch.nn import functional as F
    from ..deep.ufm import minimise
    from ..theory.softmax_code import sphere_rows
    g = torch.Generator().manual_seed(int(seed))
    V = torch.randn(K, d, generator=g, dtype=torch.float64)
    G = torch.randn(K * n, d, generator=g, dtype=torch.float64)
    V, G = sphere_rows(V).requires_grad_(True), sphere_rows(G).requires_grad_(True)
    y = torch.arange(K).repeat_interleave(n)

    own = F.one_hot(y, K).bool()

    def loss(W, H):      # tau log(mean CE): the same critical points, no underflow as tau -> 0
        Z = H @ W.T / tau
        s = torch.logsumexp((Z - Z[own][:, None]).masked_fill(own, -math.inf), 1)
        log_ce = torch.where(s < -20, s, torch.log(F.softplus(s.clamp_min(-20))))   # log CE_i
        return tau * (torch.logsumexp(log_ce, 0) - math.log(len(y)))

    res = minimise(lambda: loss(sphere_rows(V), sphere_rows(G)), [V, G], method="lbfgs", lr=1.0,
                   tol_grad=tol_grad / 10, max_iter=max_iter)
    W = sphere_rows(V.detach()).requires_grad_(True)
    H = sphere_rows(G.detach()).requires_grad_(True)
    val = loss(W, H)
    gW, gH = torch.autograd.grad(val, [W, H])
    tang = lambda X, gX: gX - (gX * X).sum(1, keepdim=True) * X
    rg = float(torch.cat([tang(W, gW).flatten(), tang(H, gH).flatten()]).detach().norm())
    return W.detach(), H.detach(), y, float(val.detach()), rg, res.iterations


def single_thread():
    """One torch thread (see :mod:`meanfield.threads`)."""
    return torch_threads(1)


@functools.lru_cache(maxsize=256)
def best_code(K: int, d: int, starts: int):
    """The direct search of :func:`meanfield.theory.softmax_code.optimise_code` (seed 0), cached."""
    from ..theory.softmax_code import optimise_code
    return optimise_code(K, d, starts=starts, seed=0)


def run(cfg: ManyClassesConfig, ctx: RunContext) -> ExperimentResult:
    import torch
    from ..theory.softmax_code import hull_distances, known_optimum, min_angle
    check(cfg)
    K, d, n = cfg.num_classes, cfg.dim, cfg.per_class
    with single_thread():
        W, H, y, val, rg, iters = fit_sphere_ufm(K, d, n, cfg.tau, seed=ctx.seed,
                                                 tol_grad=cfg.tol_grad, max_iter=cfg.max_iter)
        rho_k, gap_k = hull_distances(W)
        code = best_code(K, d, cfg.starts)
        rho_b, _ = hull_distances(code.W)
    rho_t, rho_best = float(rho_k.min()), code.value
    known = known_optimum(K, d)
    s: dict = {"K": K, "d": d, "rho_trained": rho_t,
               "rel_gap": (rho_best - rho_t) / rho_best if rho_best > 0 else float("nan"),
               "rho_known": float("nan") if known is None else known,
               "beyond_simplex": K > d + 1, "certificate_gap": float(gap_k.abs().max()),
               "angle_trained": math.degrees(min_angle(W)),
               "angle_best": math.degrees(min_angle(code.W)), "tau_log_ce": val, "grad_norm": rg,
               "converged": rg <= cfg.tol_grad, "iterations": iters}
    if known is None:
        s["rho_best"] = rho_best
    else:
        agreement(s, "rho_best", rho_best, known, cfg.known_tol)
    Hbar = torch.stack([H[y == k].mean(0) for k in range(K)])
    s["feature_spread"] = float((H - Hbar[y]).norm(dim=1).mean())
    s["code_reached"] = s["rel_gap"] < cfg.threshold
    hist = [{"class": k, "rho_k_trained": float(rho_k[k]), "rho_k_best": float(rho_b[k]),
             "cos_nearest_trained": float((W[k] @ W.T).sort().values[-2]),
             "cos_nearest_best": float((code.W[k] @ code.W.T).sort().values[-2])} for k in range(K)]
    return ExperimentResult(s, hist)


def plot(run) -> list:
    """``many_classes.png``: the one-vs-rest distance of every class, trained against the code."""
    import matplotlib.pyplot as plt
    import numpy as np
    s, h = run.summary, run.history
    k = np.array([r["class"] for r in h])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11.5, 4.3))
    a1.bar(k - 0.2, [r["rho_k_trained"] for r in h], 0.4, label="trained UFM (CE, τ)")
    a1.bar(k + 0.2, [r["rho_k_best"] for r in h], 0.4, label="direct search (softmax code)")
    a1.axhline(s["rho_best"], color="k", ls="--", label=f"best ρ found = {s['rho_best']:.4f}")
    if math.isfinite(s.get("rho_known", float("nan"))):
        a1.axhline(s["rho_known"], color="r", ls=":", label=f"known optimum = {s['rho_known']:.4f}")
    a1.set_xlabel("class k")
    a1.set_ylabel("one-vs-rest distance ρ_k = dist(w_k, conv of the others)")
    a1.set_title(f"K = {int(s['K'])}, d = {int(s['d'])}, τ = {run.config.tau:g}: ρ(trained) = "
                 f"{s['rho_trained']:.4f}, relative gap {s['rel_gap']:+.2%}\n(softmax code called "
                 f"reached below {run.config.threshold:.0%}; ‖grad‖ = {s['grad_norm']:.1e})", fontsize=9)
    a1.legend(fontsize=8, loc="lower right")
    ang = lambda key: np.degrees(np.arccos(np.clip([r[key] for r in h], -1, 1)))
    a2.plot(k, ang("cos_nearest_trained"), "o-", label="trained UFM")
    a2.plot(k, ang("cos_nearest_best"), "s--", label="softmax code found")
    a2.set_xlabel("class k")
    a2.set_ylabel("angle to the nearest other class (degrees)")
    a2.set_title("nearest-neighbour angles (the Tammes objective is their minimum)", fontsize=9)
    a2.legend(fontsize=8)
    fig.tight_layout()
    run.savefig(fig, "many_classes.png")
    return ["many_classes.png"]


def _everywhere(p) -> float:
    """The theorem's claim as a line: a softmax code at every (K, d) (negative: reached)."""
    return -1.0


EXPERIMENT = Experiment(
    name="many_classes",
    description="normalised UFM with K > d + 1 classes (CE at temperature tau): one-vs-rest distance "
                "of the trained classifier against the softmax code (docs/science.md §6.2)",
    config=ManyClassesConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="as τ → 0 the normalised UFM's classifier approaches a softmax code (max of the "
              "minimal one-vs-rest distance), for every K and d",
        source="Jiang et al., Generalized neural collapse for a large number of classes (ICML "
               "2024, arXiv 2310.05351); docs/science.md §6.2",
        regime="direction",
        statistic="rel_gap",
        threshold=0.02,
        collapsed_below=True,
        theory=Theory(_everywhere, ("num_classes", "dim"),
                      "theorem (τ → 0): a softmax code at every (K, d)", collapsed="negative"),
        labels={"num_classes": "classes K", "dim": "feature dimension d",
                "tau": "temperature τ (logits = cosines / τ)",
                "rel_gap": "(ρ_best − ρ_trained) / ρ_best",
                "rho_trained": "one-vs-rest distance ρ of the trained W",
                "rho_best": "best ρ found by direct search"}),
    small={"per_class": 1, "starts": 4, "max_iter": 1500, "tol_grad": 1e-6},
    large={"per_class": 4, "starts": 32, "max_iter": 20000},
)
