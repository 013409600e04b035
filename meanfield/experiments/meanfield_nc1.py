"""NC1 of the features entering a trained linear head, against loss + gradient norm, along the flow.

The three-layer network of Wu & Mondelli (ICML 2025; docs/science.md §6.4): a mean-field measure
of m particles with outputs in R^p, h_rho(x) = (1/m) sum_i a_i sigma(w_i . x + b_i), followed by a
trained head W in R^{K x p} (:mod:`meanfield.vector`). MSE to one-hot targets with L2
regularisation of both parts (``flow.lam`` on the measure, ``flow.lam_W`` on W); the measure
follows the Wasserstein gradient flow and W the Euclidean one on the same clock.

For every data set in ``datasets`` and every width in ``widths`` the flow runs from a Gaussian
initialisation and records, at log-spaced times, the data loss L (the MSE term), the gradient
norm G = sqrt(||grad V||^2_{L2(rho)} + ||grad_W F||^2) (Wasserstein for the measure, Frobenius
for the head), NC1 of h(x) (``nc1_tr`` = Tr Sigma_W / Tr Sigma_B, the statistic; also the
package's ``nc1`` = Tr(Sigma_W Sigma_B^+)/C), the within-class variability Tr Sigma_W and the
bound on it derived in docs/science.md §6.4 (within <= bound at every state; a check, not a fit).

Summary: ``nc1_final`` (the largest final NC1 over the runs, the atlas statistic),
``nc1_final_min``, ``ratio_max`` (the largest NC1 / (L + G) over the runs and the recorded times
t > 0), ``ratio_end`` (its largest final value), ``bound_ratio_max`` (the largest within / bound,
<= 1 by the derivation), ``loss_final_max``, ``grad_final_max``, and per run
``nc1_<dataset>_m<m>`` and ``ratio_<dataset>_m<m>`` at the end. The paper states no constant, so
no ``_agrees`` key is written: the ratio is measured, not predicted.

Step size: Heun with dt = 0.05. The gradient norm is the most step-sensitive quantity recorded
(the flow's stiffness grows with the weights as the loss falls): at dt = 0.2 it was wrong by up
to 10x by t = 300 (mnist1d, m = 512) while the objective still fell; at dt = 0.05 it is within 2 %
of dt = 0.025 up to t = 100 (mnist1d and digits, m = 512), the loss and objective within 1e-4.

Data sets (each rescaled to a mean squared input norm of 1, the first ``classes`` classes,
``per_class`` samples per class, drawn with the run's seed): ``gaussian_mixture`` (means 3 e_c in
R^max(5, C), unit std), ``digits`` (8x8, d = 64), ``mnist1d`` (d = 40) and ``mnist_subset``
(28x28, d = 784).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..threads import one_thread_on_cpu
from ..study.experiment import (Experiment, ExperimentResult, RunContext, Science, check_seed,
                                parse_dtype)
from ..vector import HeadedNetwork, VectorFlowConfig, nc1_record, simulate_vector

PRESETS = ("gaussian_mixture", "digits", "mnist1d", "mnist_subset")


@dataclass(frozen=True)
class MeanfieldNC1Config:
    """Parameters.

    Attributes:
        datasets: data sets to train on (gaussian_mixture, digits, mnist1d, mnist_subset).
        widths: numbers of particles m (one run per data set and width).
        classes: C, the first C classes of every data set (the head has K = C rows).
        per_class: samples per class.
        p: dimension of the features h(x) (the particles' outputs); at least C - 1.
        activation: activation of the particles.
        flow: the flow of (rho, W): flow.lam, flow.lam_W, flow.rate_W, time stepping, backend
            (dense by default: single-threaded torch is the fastest on these small CPU problems;
            ``--size large`` uses auto, i.e. KeOps on a GPU).
        records: number of log-spaced record times.
        dtype: float64 or float32.
    """

    datasets: tuple[str, ...] = ("gaussian_mixture", "digits", "mnist1d")
    widths: tuple[int, ...] = (32, 128, 512)
    classes: int = 3
    per_class: int = 20
    p: int = 8
    activation: str = "relu"
    flow: VectorFlowConfig = VectorFlowConfig(lam=1e-3, lam_W=1e-3, dt=0.05, t_end=100.0,
                                              backend="dense")
    records: int = 25
    dtype: str = "float64"


def _check(cfg: MeanfieldNC1Config) -> None:
    if not cfg.datasets:
        raise ValueError(f"datasets is empty; name at least one of {', '.join(PRESETS)}")
    bad = [d for d in cfg.datasets if d not in PRESETS]
    if bad:
        raise ValueError(f"unknown data set(s) {bad}; valid: {', '.join(PRESETS)}")
    if not cfg.widths or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in cfg.widths):
        raise ValueError(f"widths must be positive integers, got {cfg.widths!r}")
    if not 2 <= cfg.classes <= 10:
        raise ValueError(f"classes must be in 2..10, got {cfg.classes!r}")
    if cfg.per_class < 2:
        raise ValueError(f"per_class must be >= 2 (a within-class spread needs two samples), got {cfg.per_class!r}")
    if cfg.p < max(cfg.classes - 1, 1):
        raise ValueError(f"p = {cfg.p} < C - 1 = {cfg.classes - 1}: the class means of h cannot "
                         "span C - 1 dimensions; raise p")
    if cfg.records < 2:
        raise ValueError(f"records must be >= 2, got {cfg.records!r}")


def samples(name: str, classes: int, per_class: int, seed: int, dtype=torch.float64, device="cpu"):
    """The run's samples of one data set, rescaled to a mean squared input norm of 1."""
    from .. import Samples
    from ..data.registry import get_distribution
    if name == "gaussian_mixture":
        d = max(5, classes)
        means = (3.0 * torch.eye(d, dtype=torch.float64)[:classes]).tolist()
        s = get_distribution(name, means=means, stds=1.0).sample(classes * per_class, seed=seed)
    elif name in PRESETS:
        s = get_distribution(name, per_class=per_class, classes=tuple(range(classes))).sample(seed=seed)
    else:
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join(PRESETS)}")
    X = s.X.to(torch.float64)
    p = s.p / s.p.sum()
    scale = math.sqrt(float((p[:, None] * X ** 2).sum()))
    return Samples(X / scale, s.y, p, s.num_classes).to(dtype=dtype, device=device)


def _nanmax(values) -> float:
    """The largest finite value (NaN where none is: NC1 is undefined where the class means of h
    coincide, e.g. at the trivial point h = 0 that large weight decays reach)."""
    vals = [float(v) for v in values if math.isfinite(v)]
    return max(vals) if vals else float("nan")


def _run_set(cfg, ctx, ds, seed, dtype, flow, record, history, summary, finals) -> None:
    """Every width on one data set: rows into ``history``, final rows into ``finals``."""
    s = samples(ds, cfg.classes, cfg.per_class, seed, dtype, ctx.device)
    for m in cfg.widths:
        net = HeadedNetwork.gaussian(m, s.d, cfg.p, cfg.classes, activation=cfg.activation,
                                     seed=seed, dtype=dtype, device=ctx.device)
        res = simulate_vector(net, s, flow, record=record, num_records=cfg.records)
        rows = [{"dataset": ds, "m": m, **r} for r in res.history]
        history.extend(rows)
        finals.append(rows[-1])
        summary[f"nc1_{ds}_m{m}"] = rows[-1]["nc1_tr"]
        summary[f"ratio_{ds}_m{m}"] = rows[-1]["ratio"]


def run(cfg: MeanfieldNC1Config, ctx: RunContext) -> ExperimentResult:
    _check(cfg)
    dtype = parse_dtype(cfg.dtype)
    seed = check_seed(ctx.seed)
    flow = cfg.flow if ctx.backend in (None, "auto") else replace(cfg.flow, backend=ctx.backend)
    record = nc1_record(flow)
    history, summary, finals = [], {}, []
    # CPU: one torch thread. These problems are small (m n <= 1e5 per run at the default size):
    # two intra-op threads gain little there and, on a busy machine, spin-wait 10-50x slower
    with one_thread_on_cpu(ctx.device):
        for ds in cfg.datasets:
            _run_set(cfg, ctx, ds, seed, dtype, flow, record, history, summary, finals)
    later = [r for r in history if r["t"] > 0]
    summary.update({
        "nc1_final": _nanmax(r["nc1_tr"] for r in finals),
        "nc1_final_min": -_nanmax(-r["nc1_tr"] for r in finals),
        "ratio_max": _nanmax(r["ratio"] for r in later),
        "ratio_end": _nanmax(r["ratio"] for r in finals),
        "bound_ratio_max": _nanmax(r["within"] / r["bound"] for r in history),
        "loss_final_max": _nanmax(r["loss"] for r in finals),
        "grad_final_max": _nanmax(r["grad"] for r in finals),
        "runs": len(finals), "t_end": float(finals[-1]["t"]),
    })
    return ExperimentResult(summary, history)


def plot(run_files) -> list[str]:
    """NC1 against loss + gradient norm (log-log, one colour per data set and width, one marker
    per data set, time running from upper right to lower left), and the within-class variability
    against its bound."""
    import matplotlib.pyplot as plt
    rows = [r for r in run_files.history if isinstance(r.get("nc1_tr"), float)]
    summ = run_files.summary
    keys = list(dict.fromkeys((r["dataset"], int(r["m"])) for r in rows))
    dsets = list(dict.fromkeys(k[0] for k in keys))
    markers = "os^Dv<>p*h"
    cmap = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12.5, 6.4))
    allx, ally = [], []
    for ds, m in keys:
        rr = [r for r in rows if r["dataset"] == ds and int(r["m"]) == m and r["nc1_tr"] > 0]
        x = [r["loss"] + r["grad"] for r in rr]
        y = [r["nc1_tr"] for r in rr]
        allx += x
        ally += y
        col, mk = cmap(keys.index((ds, m)) % cmap.N), markers[dsets.index(ds) % len(markers)]
        ax.loglog(x, y, "-", color=col, lw=0.8, alpha=0.6)
        ax.loglog(x, y, mk, color=col, ms=4, mfc="none", label=f"{ds}, m = {m}")
        ax.loglog(x[-1:], y[-1:], mk, color=col, ms=7)
        wb = [(r["bound"], r["within"]) for r in rr if math.isfinite(r["bound"]) and r["within"] > 0]
        if wb:
            bx.loglog([a for a, _ in wb], [b for _, b in wb], mk, color=col, ms=4, mfc="none")
    if allx:
        lo, hi = min(allx), max(allx)
        for key, ls, what in (("ratio_max", "--", "max over the flow"), ("ratio_end", "-.", "max at t_end")):
            c = summ.get(key, float("nan"))
            if isinstance(c, float) and math.isfinite(c) and c > 0:
                ax.loglog([lo, hi], [c * lo, c * hi], "k", ls=ls, lw=1,
                          label=f"NC1 = c·(L + G), c = {c:.3g}: {what} (measured)")
    ax.axhline(0.05, color="grey", ls=":", lw=1, label="threshold 0.05 (collapsed below)")
    ax.set_xlabel("loss + gradient norm  L + G  (at the recorded times; filled: t_end)")
    ax.set_ylabel("NC1 = Tr Σ_W / Tr Σ_B of h(x)")
    ax.set_title("NC1 of the features entering the linear head vs L + G\n"
                 f"(time runs to the lower left; t_end = {summ.get('t_end', float('nan')):.3g})",
                 fontsize=10)

    lims = bx.get_xlim() + bx.get_ylim()
    if all(math.isfinite(v) and v > 0 for v in lims):
        a, b = min(lims), max(lims)
        bx.loglog([a, b], [a, b], "k-", lw=1, label="within = bound")
    bx.set_xlabel("bound 2-part: Σ p_j‖W⁺(r_j − r̄_c)‖² + S·E|(I−P)∇_aV|²/λ²  (docs/science.md §6.4)")
    bx.set_ylabel("within-class variability Tr Σ_W of h(x)")
    bx.set_title(f"derived bound holds: max within / bound = {summ.get('bound_ratio_max', float('nan')):.2g}",
                 fontsize=10)
    bx.legend(fontsize=8, loc="upper left", title="colours and markers as on the left",
              title_fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7.5)
    fig.tight_layout(rect=(0, 0.05 + 0.022 * math.ceil(len(labels) / 3), 1, 1))
    run_files.savefig(fig, "nc1_vs_loss_grad.png")
    return ["nc1_vs_loss_grad.png"]


EXPERIMENT = Experiment(
    name="meanfield_nc1",
    description="mean-field three-layer net (measure with outputs in R^p + trained linear head), MSE + "
                "L2: NC1 of h(x) against loss + gradient norm along the flow (Wu & Mondelli 2025)",
    config=MeanfieldNC1Config,
    run=run,
    science=Science(
        claim="points with small loss and gradient norm approximately satisfy NC1 of the features "
              "entering the linear head; gradient flow on the regularised MSE reaches them",
        source="docs/science.md §6.4; Wu & Mondelli, Neural collapse beyond the unconstrained "
               "features model (ICML 2025, arXiv 2501.19104)",
        regime="bounded",
        statistic="nc1_final",
        threshold=0.05,
        collapsed_below=True,
        theory=None,
        labels={"flow.lam": "λ (weight decay of the measure)", "flow.lam_W": "λ_W (weight decay of the head W)",
                "flow.t_end": "training time t", "nc1_final": "NC1 of h(x) at t_end",
                "ratio_max": "max NC1 / (loss + grad norm)", "ratio_end": "NC1 / (loss + grad norm) at t_end",
                "nc1_tr": "NC1 = Tr Σ_W / Tr Σ_B of h(x)"}),
    plot=plot,
    small={"datasets": ("gaussian_mixture",), "widths": (16, 48), "per_class": 8, "records": 8,
           "flow.t_end": 20.0},
    large={"datasets": ("gaussian_mixture", "digits", "mnist1d", "mnist_subset"),
           "widths": (256, 1024, 4096, 16384), "per_class": 100, "classes": 10, "p": 16,
           "flow.t_end": 1000.0, "records": 40, "flow.backend": "auto"},
)
