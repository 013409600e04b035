"""Unconstrained features model: numerical optimum against the closed forms across lambda (docs/science.md §3.5).

Balanced data, ``num_classes`` = K classes, ``per_class`` = n samples per class, every weight
decay equal to ``lam``
(``lW = lH = lam``; CE with a regularised bias ``lb = lam``; extended UFM ``lW2 = lW1 = lH = lam``).
For each ``lam`` on a log grid (``lam_min``, ``lam_max``, ``lam_num`` points) through the
collapse-to-zero threshold the UFM is optimised in
float64 (:func:`meanfield.deep.ufm.fit_ufm`, :func:`meanfield.deep.extended_ufm.fit_extended_ufm`:
L-BFGS with strong-Wolfe line search, restarted until the gradient norm is below ``tol_grad``) and
compared with :mod:`meanfield.theory.ufm`:

- ``mse_none``: MSE, no bias, ``W Hbar = c I``, ``c = max(0, 1 - K mu)``, ``mu = sqrt(n) lam``;
- ``mse_free``: MSE, free bias, ``W Hbar = c J``, ``b = 1/K``;
- ``ce``: cross-entropy (Zhu et al.), ``|w_k|^2 = a``, zero when ``K mu >= 1``;
- ``ext_linear``: extended UFM ``W2 W1 H`` (Tirer & Bruna), ``W2 W1 Hbar = s I``.

**Convention.** The UFM losses are the ``1/(2N)`` (MSE) and ``1/N`` (CE) data terms of
:mod:`meanfield.deep.ufm`, exactly as in docs/science.md §3.5 (no ``1/C`` factor here).

Thresholds: MSE and CE collapse to W = H = 0 at ``K sqrt(n) lam = 1``
(:func:`meanfield.theory.ufm.collapse_margin` with ``lW = lH = lam``); the extended UFM where the
value at the largest root of ``t^4 - t + K tau = 0`` reaches 1/2 (a first-order jump). Within
``band`` of the MSE/CE threshold (``|K mu - 1| <= band``) and where the extended UFM's two candidate
values differ by less than ``band / 10`` the problem is ill-conditioned (docs/science.md §3.5): those
points are drawn but not counted in the agreements.

The extended UFM has spurious local minima: ``s = 0`` everywhere and, measured here, class-wise
mixtures ``W2 W1 Hbar = diag(s_k)`` with some ``s_k = t^3`` and the others 0 (value
``(j v_root + (K - j)/2) / K`` for j live classes), which random starts reach often just below the threshold at the minimal dimensions K + 1 (e.g.
value 0.4765 instead of 0.4686 at K = 4, n = 3, lam = 0.063, 8 of 8 starts). With hidden and feature
dimension 4K (``ext_dim``) starts of scale 1 reached the global value in 4 of 4 tries at the same
points. The numerical optimum is the best of ``restarts`` random starts with initial scales cycling
through 1, 2, 0.05 (large starts reach ``s = t^3``, small ones
``s = 0``); ``ext_trapped_start_fraction`` reports how many starts ended above the global value. The
MSE and CE UFMs have no spurious local minima (docs/science.md §3.5) and use one start.

**Tolerances** (the method's error). At a gradient norm ``g <= tol_grad = 1e-10`` the distance to a
non-degenerate minimiser is at most ``g / h`` with ``h`` the smallest Hessian eigenvalue
transverse to the rotation orbit; ``h`` is of order ``lam >= 1e-3`` outside the band, so the
minimiser is within ~1e-7 and the value within ``g^2 / h`` ~ 1e-17 (float64 round-off, ~1e-15
relative, dominates). Hence

- ``value_err_<case>``: max over the grid of ``|v - v*| / v*``, theory 0, tolerance ``1e-9``
  (three decades above round-off, far below any modelling error such as a wrong threshold);
- ``normW2_err_<case>``: max of ``| |W|^2 - |W*|^2 | / max(1, |W*|^2)`` (``W2`` for the extended
  UFM), theory 0, tolerance ``1e-5``: the norm error is first order in the distance, ``2|W| g/h``
  ~ 1e-6 at ``|W| ~ 3``, with a factor 10 for the smallest ``h`` on the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .registry import Experiment, ExperimentResult, RunContext, Science, agreement

CASES = ("mse_none", "mse_free", "ce", "ext_linear")
SCALES = (1.0, 2.0, 0.05)  # initial scales of the extended UFM's restarts, cycled
VALUE_TOL = 1e-9
NORM_TOL = 1e-5
_NAMES = {"mse_none": "MSE, no bias (orthogonal frame)", "mse_free": "MSE, free bias (simplex ETF)",
          "ce": "cross-entropy, regularised bias", "ext_linear": "extended UFM W₂W₁H (linear)"}


@dataclass(frozen=True)
class UFMExperimentConfig:
    """Parameters of the UFM experiment.

    Attributes:
        num_classes: K, classes.
        per_class: n, samples per class.
        lam_min: smallest weight decay lam of the log grid (every penalty = lam).
        lam_max: largest weight decay of the grid.
        lam_num: points of the grid.
        cases: which of mse_none, mse_free, ce, ext_linear.
        restarts: random starts of the extended UFM (best value kept).
        ext_dim: hidden and feature dimension of the extended UFM (None: 4K, which removes most spurious minima).
        band: half-width of the excluded band around the MSE/CE threshold in K mu.
        tol_grad: optimiser stop: gradient norm.
        max_iter: optimiser stop: iterations.
    """

    num_classes: int = 4
    per_class: int = 3
    lam_min: float = 3e-3
    lam_max: float = 0.5
    lam_num: int = 12
    cases: tuple[str, ...] = CASES
    restarts: int = 6
    ext_dim: Optional[int] = None
    band: float = 0.1
    tol_grad: float = 1e-10
    max_iter: int = 20_000


def threshold(K: int, n: int) -> float:
    """The MSE/CE collapse-to-zero threshold in lam (``lW = lH = lam``): ``1 / (K sqrt(n))``."""
    from ..theory.ufm import collapse_threshold
    return collapse_threshold(K, n)


def ext_threshold(K: int, n: int) -> float:
    """The extended-UFM threshold in lam (all three decays = lam), by bisection on the closed form."""
    from ..theory.ufm import extended_ufm
    lo, hi = 1e-8, 10.0
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if extended_ufm(K, n, mid, mid, mid).s > 0:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def theory(case: str, K: int, n: int, lam: float) -> tuple[float, float]:
    """(optimal value, |W|_F^2) of a case in closed form (``|W2|^2`` for the extended UFM)."""
    from ..theory.ufm import ce_ufm, extended_ufm, mse_ufm
    if case == "mse_none":
        s = mse_ufm(K, n, lam, lam, bias="none")
    elif case == "mse_free":
        s = mse_ufm(K, n, lam, lam, bias="free")
    elif case == "ce":
        s = ce_ufm(K, n, lam, lam, lam)
    elif case == "ext_linear":
        e = extended_ufm(K, n, lam, lam, lam)
        return e.value, e.norm_W2_2
    else:
        raise ValueError(f"unknown case {case!r}; valid: {', '.join(CASES)}")
    return s.value, s.norm_W2


def ill_conditioned(case: str, K: int, n: int, lam: float, band: float) -> bool:
    """True inside the band around the threshold where the comparison is not meaningful."""
    if case == "ext_linear":
        from ..theory.ufm import extended_ufm
        e = extended_ufm(K, n, lam, lam, lam)
        return e.value_at_root is not None and abs(e.value_at_root - e.value_at_zero) <= band / 10
    from ..theory.ufm import collapse_margin
    return abs(collapse_margin(K, n, lam, lam)) <= band


def fit(case: str, K: int, n: int, lam: float, cfg: UFMExperimentConfig, seed: int, device
        ) -> tuple[float, float, float, list]:
    """(value, |W|_F^2, gradient norm) of the best start, and the final value of every start."""
    from ..deep.extended_ufm import ExtendedUFMConfig, fit_extended_ufm
    from ..deep.ufm import UFMConfig, fit_ufm
    kw = dict(tol_grad=cfg.tol_grad, max_iter=cfg.max_iter)
    if case == "ext_linear":
        best, values, dim = None, [], cfg.ext_dim or 4 * K
        for r in range(cfg.restarts):
            scale = SCALES[r % len(SCALES)]  # large starts find s = t^3, small ones s = 0
            res = fit_extended_ufm(K, n, ExtendedUFMConfig(lW2=lam, lW1=lam, lH=lam, seed=seed + r,
                                                           init_scale=scale, hidden_dim=dim,
                                                           feature_dim=dim, **kw), device=device)
            values.append(res.value)
            if best is None or res.value < best.value:
                best = res
        return best.value, float((best.W2 ** 2).sum()), best.grad_norm, values
    if case in ("mse_none", "mse_free"):
        c = UFMConfig(loss="mse", bias=case[4:], lW=lam, lH=lam, seed=seed, **kw)
    elif case == "ce":
        c = UFMConfig(loss="cross_entropy", bias="regularised", lW=lam, lH=lam, lb=lam, feature_dim=K,
                      seed=seed, **kw)
    else:
        raise ValueError(f"unknown case {case!r}; valid: {', '.join(CASES)}")
    res = fit_ufm(K, n, c, device=device)
    return res.value, float((res.W ** 2).sum()), res.grad_norm, [res.value]


def run(cfg: UFMExperimentConfig, ctx: RunContext) -> ExperimentResult:
    bad = [c for c in cfg.cases if c not in CASES]
    if bad or not cfg.cases:
        raise ValueError(f"unknown case(s) {bad}; valid: {', '.join(CASES)}")
    if not (0 < cfg.lam_min < cfg.lam_max) or cfg.lam_num < 2:
        raise ValueError(f"need 0 < lam_min < lam_max and lam_num >= 2; got {cfg.lam_min}, "
                         f"{cfg.lam_max}, {cfg.lam_num}")
    K, n = cfg.num_classes, cfg.per_class
    lams = np.geomspace(cfg.lam_min, cfg.lam_max, cfg.lam_num)
    history = []
    for case in cfg.cases:
        for i, lam in enumerate(lams):
            v, w2, g, starts = fit(case, K, n, float(lam), cfg, ctx.seed, ctx.device)
            tv, tw2 = theory(case, K, n, float(lam))
            trapped = sum(x > tv + 1e-6 * max(1.0, tv) for x in starts)
            history.append({"case": case, "lam": float(lam), "value": v, "value_theory": tv,
                            "normW2": w2, "normW2_theory": tw2, "grad_norm": g,
                            "starts": len(starts), "starts_trapped": trapped,
                            "excluded": ill_conditioned(case, K, n, float(lam), cfg.band)})
    summary: dict = {}
    for case in cfg.cases:
        rows = [r for r in history if r["case"] == case and not r["excluded"]]
        verr = max(abs(r["value"] - r["value_theory"]) / abs(r["value_theory"]) for r in rows)
        werr = max(abs(r["normW2"] - r["normW2_theory"]) / max(1.0, r["normW2_theory"]) for r in rows)
        agreement(summary, f"value_err_{case}", verr, 0.0, VALUE_TOL)
        agreement(summary, f"normW2_err_{case}", werr, 0.0, NORM_TOL)
        summary[f"points_{case}"] = len(rows)
    if "ext_linear" in cfg.cases:
        ext = [r for r in history if r["case"] == "ext_linear"]
        summary["ext_trapped_start_fraction"] = (sum(r["starts_trapped"] for r in ext)
                                                 / sum(r["starts"] for r in ext))
    summary["threshold_lam"] = threshold(K, n)
    if "ext_linear" in cfg.cases:
        summary["threshold_lam_ext"] = ext_threshold(K, n)
    summary["max_grad_norm"] = max(r["grad_norm"] for r in history)
    return ExperimentResult(summary, history)


def _flag(v) -> bool:
    """A boolean column, in memory or read back from history.csv (``True``/``False``)."""
    return v is True or v == 1 or (isinstance(v, str) and v.strip().lower() in ("true", "1"))


def plot(run) -> list[str]:
    """``ufm_vs_lambda.png``: optimum against the closed forms across lambda, from the run's files
    (the closed-form curves are evaluated from the config)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter
    cfg, s = run.config, run.summary
    K, n = cfg.num_classes, cfg.per_class
    history = [dict(r, lam=float(r["lam"]), value=float(r["value"]), normW2=float(r["normW2"]),
                    excluded=_flag(r["excluded"])) for r in run.history]
    dense = np.geomspace(cfg.lam_min, cfg.lam_max, 400)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    thr = float(s["threshold_lam"])
    thr_e = float(s["threshold_lam_ext"]) if "threshold_lam_ext" in s else ext_threshold(K, n)
    for j, case in enumerate(cfg.cases):
        col = f"C{j}"
        th = np.array([theory(case, K, n, float(l)) for l in dense])
        rows = [r for r in history if r["case"] == case]
        lam = [r["lam"] for r in rows]
        for ax, k, col_th in ((axes[0], "value", th[:, 0]), (axes[1], "normW2", np.sqrt(th[:, 1]))):
            ax.plot(dense, col_th, color=col, lw=1.5, label=_NAMES[case])
            y = [r[k] if k == "value" else math.sqrt(max(r[k], 0.0)) for r in rows]
            ex = [r["excluded"] for r in rows]
            ax.plot([l for l, e in zip(lam, ex) if not e], [v for v, e in zip(y, ex) if not e], "o",
                    color=col, ms=6, mfc="none", mew=1.5)
            if any(ex):
                ax.plot([l for l, e in zip(lam, ex) if e], [v for v, e in zip(y, ex) if e], "x",
                        color=col, ms=7)
    for ax in axes:
        ax.axvline(thr, color="k", ls=":", lw=1.2)
        ax.axvline(thr_e, color="0.4", ls="-.", lw=1.2)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("weight decay λ (every penalty of the model = λ; log scale)")
        ax.grid(alpha=0.3, which="both")
    ymax = axes[1].get_ylim()[1]
    axes[1].text(thr, ymax * 0.97, f" MSE/CE threshold\n K√n λ = 1 (λ = {thr:.3g})", fontsize=8, va="top")
    axes[1].text(thr_e, ymax * 0.45, f" extended-UFM\n threshold\n λ = {thr_e:.3g}", fontsize=8, va="top",
                 color="0.3")
    axes[0].set_ylabel("optimal objective value")
    axes[0].set_title("Optimal value of the UFM objective")
    axes[1].set_ylabel(r"$\|W\|_F$ at the optimum ($\|W_2\|_F$ for the extended UFM)")
    axes[1].set_title("Classifier norm collapses to 0 past the threshold")
    from matplotlib.lines import Line2D
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], color="k", lw=1.5), Line2D([], [], color="k", marker="o", ls="", mfc="none"),
                Line2D([], [], color="k", marker="x", ls=""), Line2D([], [], color="k", ls=":"),
                Line2D([], [], color="0.4", ls="-.")]
    labels += ["closed form (line)", "L-BFGS optimum, float64 (circle)",
               "ill-conditioned band, not counted (cross)", "MSE/CE threshold", "extended-UFM threshold"]
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.13))
    worst = max(float(s[f"value_err_{c}"]) for c in cfg.cases)
    fig.suptitle(f"UFM and extended UFM: numerical optimum vs closed form (K = {K} classes, n = {n} per "
                 f"class, float64)\nworst relative value error {worst:.1g} (tolerance {VALUE_TOL:g})",
                 fontsize=12)
    fig.tight_layout()
    run.savefig(fig, "ufm_vs_lambda.png")
    return ["ufm_vs_lambda.png"]


EXPERIMENT = Experiment(
    name="ufm",
    description="UFM / extended UFM: L-BFGS optimum vs closed form across weight decay through the "
                "collapse-to-zero threshold (MSE no bias, MSE free bias, CE, linear extended) (§3.5)",
    config=UFMExperimentConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="The UFM optimum is in closed form (orthogonal frame / simplex ETF / Tirer–Bruna root) "
              "and collapses to W = H = 0 past a threshold in λ",
        source="docs/science.md §3.5; Zhu et al. (NeurIPS 2021); Tirer & Bruna, Extended "
               "unconstrained features model for exploring deep neural collapse (ICML 2022)",
        regime="bounded",
        statistic="value_err_ce",
        threshold=VALUE_TOL,
        collapsed_below=True,
        theory=None,
        labels={"lam_min": "smallest weight decay λ of the grid", "lam_max": "largest weight decay λ",
                "num_classes": "classes K", "per_class": "samples per class n",
                "value_err_ce": "max relative error of the optimal value (CE)",
                "threshold_lam": "λ at K√n λ = 1"}),
    large={"num_classes": 10, "per_class": 20, "lam_num": 40, "lam_min": 1e-3, "restarts": 5},
    small={"lam_num": 4, "lam_min": 0.02, "lam_max": 0.3, "restarts": 3},
)
