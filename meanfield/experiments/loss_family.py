"""Cross-entropy, label smoothing, focal loss and MSE reach the same simplex ETF (docs/science.md §5.2).

Zhou, You, Li, Liu, Liu, Qu and Zhu, "Are all losses created equal? A neural collapse perspective"
(NeurIPS 2022): in the unconstrained features model (UFM) the only global minimisers of CE, label
smoothing (LS) and focal loss (FL) are neural-collapse solutions, and so are those of MSE. Two parts:

**UFM.** K classes, n samples per class, feature dimension d = ``feature_dim`` (> K), the UFM of
:func:`meanfield.deep.ufm.fit_ufm` (L-BFGS, float64) for each loss in ``losses``; CE, LS and FL
with a bias penalised by ``lam_b`` (the paper's objective), MSE with an **unpenalised** bias
(without one the MSE optimum is an orthogonal frame, §3.5). ``starts`` random Gaussian starts per
loss, **all kept** (no selection). A start "reaches a simplex ETF" when nc1, nc2_etf_w, nc3 and
|gram_ortho_w - sqrt(2 - 2 sqrt((K-1)/K))| (the uncentred Gram of W is a simplex's, not an
orthogonal frame's) are all below ``etf_tol``; ``frac_etf_<loss>`` is the fraction of starts that do.

Theory on the ETF family (W W^T = a K/(K-1) (I - 11^T/K), hbar_k = sqrt(lam_W/(n lam_H)) w_k,
b = 0): the logit gap t = z_y - z_j of every sample sets the objective

.. math::

    g(t) = \\ell(t) + (K - 1)\\,\\mu\\, t, \\qquad \\mu = \\sqrt{n\\lambda_W\\lambda_H}, \\qquad
    \\|W\\|_F^2 = (K - 1)\\, t\\, \\sqrt{n\\lambda_H/\\lambda_W},

with l(t) the loss of the logits (t(K-1)/K, -t/K, ...). Its minimiser t* (a 1-D problem, solved on
a grid and refined; CE: t* = log(1/mu - (K-1)), LS: softmax probability q_y - (K-1) mu of the true
class) gives ``normW_<loss>_theory`` and ``value_<loss>_theory``; MSE with a free bias uses the
closed form of :func:`meanfield.theory.ufm.mse_ufm`. The trivial optimum t* = 0 (W = H = 0) takes
over beyond ``kmu_threshold_<loss>`` (K mu = 1 for CE and MSE, 1 - alpha for LS, larger than 1
for FL: ((K-1)/K)^gamma (1 + gamma log K/(K-1)) where g'(0) changes sign; found numerically as the
largest K mu with min g < g(0)); the run refuses a point within ``band`` of it.

Tolerances: ``normW`` (the start farthest from theory) ``norm_tol`` = 1e-4 absolute, the value
``1e-7`` relative (the optimiser stops at gradient norm ``tol_grad`` = 1e-8, which puts the
minimiser within ~1e-6 away from the thresholds, §3.5; L-BFGS stalls near 2e-9 in float64); ``frac_etf`` is claimed equal to 1 (tolerance 0) only for
CE, LS and MSE, whose UFM landscapes are proved benign (every critical point other than the
global minimisers is a strict saddle: Zhu et al. 2021, Zhou et al. 2022 for LS; §5.2); for FL the
paper proves this only near the optimum, so its fraction is reported, not claimed.

**Deep nets.** One network per loss (same initialisation and batch order) on ``data``
(``train_per_class`` training images per class, the rest as test set): test accuracy with its
Wilson 95% interval and, for every pair, the 95% interval of the paired accuracy difference
(normal approximation on the per-image differences). ``acc_diff`` = the largest |endpoint| of
these intervals; its ``_agrees`` (|every difference| within ``acc_tol`` = 2 points at 95%) is
written only when the test set has at least ``min_test`` = 1000 images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch

from ..deep.train import TrainConfig
from ..study.spec import DataSpec, ModelSpec
from .registry import Experiment, ExperimentResult, RunContext, Science, agreement

LOSSES = ("cross_entropy", "label_smoothing", "focal", "mse")
SHORT = {"cross_entropy": "CE", "label_smoothing": "LS", "focal": "FL", "mse": "MSE"}
PROVED = ("cross_entropy", "label_smoothing", "mse")  # benign global landscape in the UFM
CRITERIA = ("nc1", "nc2_etf_w", "nc3", "gram_err")
Z95 = 1.959963984540054


@dataclass(frozen=True)
class LossFamilyConfig:
    """Parameters of loss_family.

    Attributes:
        losses: the losses compared (cross_entropy, label_smoothing, focal, mse), comma-separated.
        smoothing: alpha of label smoothing, in [0, 1).
        focal_gamma: gamma of the focal loss, >= 0.
        num_classes: K, classes of the UFM.
        per_class: n, UFM samples per class.
        feature_dim: d, UFM feature dimension (> K by default, as the landscape theorems assume).
        lam_w: UFM weight decay of W.
        lam_h: UFM weight decay of H (summed over samples).
        lam_b: UFM weight decay of the bias for CE, LS, FL (MSE: unpenalised bias).
        starts: random starts per loss, all kept.
        init_scale: standard deviation of the Gaussian starts.
        tol_grad: optimiser stop: gradient norm.
        max_iter: optimiser stop: iterations.
        etf_tol: a start reaches a simplex ETF when nc1, nc2_etf_w, nc3, |gram_ortho_w - ETF| are below this.
        norm_tol: tolerance of |W| against the theory (absolute).
        band: refuse K mu within this relative distance of a loss's collapse-to-zero threshold.
        deep: also train one deep network per loss (False: UFM only).
        data: data set of the deep part (digits, mnist_subset; mnist with data.folder).
        train_per_class: training images per class; the rest is the test set.
        model: the deep network (mlp: model.width, model.depth).
        train: training of every deep network (train.loss is set per arm).
        mse_loss_scale: train.loss_scale of the MSE arm (1: (1/2)|f - e_y|^2 per sample; None: 1/C).
        acc_tol: the accuracy differences claimed to lie within +-acc_tol (fraction).
        min_test: no acc_diff_agrees below this many test images.
    """

    losses: tuple[str, ...] = LOSSES
    smoothing: float = 0.1
    focal_gamma: float = 2.0
    num_classes: int = 4
    per_class: int = 5
    feature_dim: int = 5
    lam_w: float = 5e-3
    lam_h: float = 5e-3
    lam_b: float = 5e-3
    starts: int = 10
    init_scale: float = 1.0
    tol_grad: float = 1e-8
    max_iter: int = 20_000
    etf_tol: float = 1e-4
    norm_tol: float = 1e-4
    band: float = 0.1
    deep: bool = True
    data: DataSpec = DataSpec("digits")
    train_per_class: int = 50
    model: ModelSpec = ModelSpec("mlp", {"width": 256, "depth": 3})
    train: TrainConfig = TrainConfig(optimizer="adam", lr=1e-3, epochs=30, batch_size=64,
                                     weight_decay=5e-4, loss="cross_entropy", log_every=5)
    mse_loss_scale: Optional[float] = 1.0
    acc_tol: float = 0.02
    min_test: int = 1000


def _check(cfg: LossFamilyConfig) -> None:
    bad = [l for l in cfg.losses if l not in LOSSES]
    if bad or not cfg.losses or len(set(cfg.losses)) != len(cfg.losses):
        raise ValueError(f"losses must be distinct names among {', '.join(LOSSES)}; got "
                         f"{cfg.losses!r}")
    K = cfg.num_classes
    if K < 2 or cfg.per_class < 1 or cfg.feature_dim < K - 1 or cfg.starts < 1:
        raise ValueError(f"need num_classes >= 2, per_class >= 1, feature_dim >= num_classes - 1, "
                         f"starts >= 1; got {K}, {cfg.per_class}, {cfg.feature_dim}, {cfg.starts}")
    for k in ("lam_w", "lam_h", "lam_b", "etf_tol", "norm_tol", "acc_tol"):
        v = getattr(cfg, k)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{k} must be a finite number > 0, got {v!r}")
    if not (math.isfinite(cfg.smoothing) and 0 <= cfg.smoothing < 1):
        raise ValueError(f"smoothing must be in [0, 1), got {cfg.smoothing!r}")
    if not (math.isfinite(cfg.focal_gamma) and cfg.focal_gamma >= 0):
        raise ValueError(f"focal_gamma must be finite and >= 0, got {cfg.focal_gamma!r}")


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


# --- the UFM part ----------------------------------------------------------------------------------

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


def _ufm_part(cfg: LossFamilyConfig, ctx: RunContext, summary: dict) -> list[dict]:
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


# --- the deep part ---------------------------------------------------------------------------------

def deep_loss_name(loss: str, *, smoothing: float, focal_gamma: float) -> str:
    """The name of ``loss`` in :data:`meanfield.losses.LOSSES`, registered on first use.

    label_smoothing and focal enter as user losses ``label_smoothing(alpha=...)`` and
    ``focal(gamma=...)`` (the same per-sample functions as the UFM)."""
    from ..deep.ufm import focal_loss, label_smoothing_loss
    from ..losses import LOSSES, Loss
    if loss in ("cross_entropy", "mse"):
        return loss
    if loss == "label_smoothing":
        name, a = f"label_smoothing(alpha={smoothing:g})", smoothing

        def value(f, y):
            return label_smoothing_loss(f, y, a)

        def grad(f, y):
            k = f.shape[-1]
            q = (1 - a) * torch.nn.functional.one_hot(y.long(), k).to(f.dtype) + a / k
            return torch.softmax(f, dim=-1) - q
    else:
        name, gm = f"focal(gamma={focal_gamma:g})", focal_gamma

        def value(f, y):
            return focal_loss(f, y, gm)

        def grad(f, y):
            with torch.enable_grad():
                f = f.detach().requires_grad_()
                return torch.autograd.grad(focal_loss(f, y, gm).sum(), f)[0]
    if name not in LOSSES.list():
        # label smoothing has finite minimisers without weight decay; focal loss, like CE, does not
        LOSSES.register(name, Loss(name, value, grad, min_outputs=2, unbounded=loss == "focal"),
                        overwrite=True)
    return name


def wilson(k: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k/n."""
    p, z2 = k / n, Z95 ** 2
    c = (p + z2 / (2 * n)) / (1 + z2 / n)
    h = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return c - h, c + h


def paired_interval(a, b) -> tuple[float, float, float]:
    """Mean and 95% interval of the paired difference of two 0/1 vectors ((n,) Tensors)."""
    d = a.double() - b.double()
    m = float(d.mean())
    se = float(d.std(unbiased=True)) / math.sqrt(len(d)) if len(d) > 1 else float("inf")
    return m, m - Z95 * se, m + Z95 * se


def _deep_part(cfg: LossFamilyConfig, ctx: RunContext, summary: dict) -> list[dict]:
    from ..deep.train import collect_features, train
    from ..models import build_model
    from .fixed_etf import split
    from .weight_decay import checkpointer, load_data
    full = load_data(cfg.data, standardise="none").sample(dtype=torch.float32, device=ctx.device)
    tr, te = split(full, cfg.train_per_class, seed=ctx.seed)
    rows, correct = [], {}
    for loss in cfg.losses:
        name = deep_loss_name(loss, smoothing=cfg.smoothing, focal_gamma=cfg.focal_gamma)
        net = build_model(cfg.model, tr.d, tr.num_classes, seed=ctx.seed, dtype=torch.float32,
                          device=ctx.device)
        tc = replace(cfg.train, loss=name, seed=cfg.train.seed + ctx.seed)
        if loss == "mse":
            tc = replace(tc, loss_scale=cfg.mse_loss_scale)
        res = train(net, tr, tc, test=te, progress=ctx.progress,
                    checkpoint=checkpointer(ctx, f"checkpoint-{loss}.pt"))
        rows += [dict(r, part="deep", loss=loss) for r in res.history]
        correct[loss] = (collect_features(net, te, tc)[1].argmax(-1) == te.y).cpu()
        s, k = SHORT[loss], int(correct[loss].sum())
        summary[f"test_acc_{s}"] = k / te.n
        summary[f"test_acc_{s}_lo"], summary[f"test_acc_{s}_hi"] = wilson(k, te.n)
        summary[f"train_acc_{s}"] = res.final["accuracy"]
    worst = 0.0
    for i, a in enumerate(cfg.losses):
        for b in cfg.losses[i + 1:]:
            m, lo, hi = paired_interval(correct[a], correct[b])
            key = f"diff_{SHORT[a]}_{SHORT[b]}"
            summary.update({key: m, f"{key}_lo": lo, f"{key}_hi": hi})
            worst = max(worst, abs(lo), abs(hi))
    summary.update({"n_train": tr.n, "n_test": te.n})
    if len(cfg.losses) > 1:
        if te.n >= cfg.min_test:
            agreement(summary, "acc_diff", worst, 0.0, cfg.acc_tol)
        else:
            summary["acc_diff"] = worst
    return rows


def run(cfg: LossFamilyConfig, ctx: RunContext) -> ExperimentResult:
    from ..simulation import _torch_threads
    _check(cfg)
    summary: dict = {}
    # CPU: one torch thread; these problems are small, and two threads spin-wait on a busy machine
    with _torch_threads(1 if str(ctx.device).startswith("cpu") else None):
        rows = _ufm_part(cfg, ctx, summary)
        if cfg.deep:
            rows += _deep_part(cfg, ctx, summary)
    return ExperimentResult(summary, rows)


def plot(run) -> list[str]:
    """``loss_family.png``: the UFM starts' distance to a simplex ETF and |W| against theory; the
    deep nets' accuracies and paired differences with 95% intervals (from the run's files)."""
    import matplotlib.pyplot as plt
    from .weight_decay import num
    cfg, s = run.config, run.summary
    losses = [l for l in cfg.losses if f"frac_etf_{SHORT[l]}" in s]
    deep = cfg.deep and f"test_acc_{SHORT[losses[0]]}" in s
    fig, axes = plt.subplots(1, 3 if deep else 2, figsize=(16 if deep else 11, 4.8))
    ufm = [r for r in run.history if r.get("part") == "ufm"]
    names = {"nc1": "NC1", "nc2_etf_w": "NC2: ETF distance of W Wᵀ", "nc3": "NC3",
             "gram_err": "|gram_ortho_w − simplex value|"}
    ax = axes[0]
    for j, k in enumerate(CRITERIA):
        for i, loss in enumerate(losses):
            v = [max(num(r, k) or 0.0, 1e-17) for r in ufm if r.get("loss") == loss]
            ax.scatter([i + (j - 1.5) * 0.12] * len(v), v, s=14, color=f"C{j}",
                       label=names[k] if i == 0 else None)
    ax.axhline(cfg.etf_tol, ls="--", color="k", label=f"etf_tol = {cfg.etf_tol:g}")
    ax.set_yscale("log")
    ax.set_ylim(1e-17, 10)
    ax.set_xticks(range(len(losses)), [f"{SHORT[l]}\n{s[f'frac_etf_{SHORT[l]}']:.0%} of "
                                       f"{cfg.starts}" for l in losses])
    ax.set_ylabel("distance to a simplex ETF (dimensionless; 1e-17 = exact)")
    ax.set_title(f"UFM, K = {cfg.num_classes}, n = {cfg.per_class}, d = {cfg.feature_dim}: every "
                 f"start\n(tick: fraction reaching a simplex ETF; theory: 100%)", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    ax = axes[1]
    for i, loss in enumerate(losses):
        v = [num(r, "normW") for r in ufm if r.get("loss") == loss]
        ax.scatter([i] * len(v), v, s=18, color="tab:blue", label="starts" if i == 0 else None)
        th = s[f"normW_{SHORT[loss]}_theory"]
        ax.hlines(th, i - 0.3, i + 0.3, color="k", label="theory (ETF family)" if i == 0 else None)
        ax.annotate(f"threshold\nKμ = {s[f'kmu_threshold_{SHORT[loss]}']:.3g}", (i, th),
                    textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    ax.set_xticks(range(len(losses)), [SHORT[l] for l in losses])
    ax.set_ylim(0, 1.3 * ax.get_ylim()[1])
    ax.set_ylabel("‖W‖_F at the optimum")
    ax.set_title(f"‖W‖_F against theory (λ_W = {cfg.lam_w:g}, λ_H = {cfg.lam_h:g}, Kμ = "
                 f"{s['kmu']:.3g};\nLS α = {cfg.smoothing:g}, FL γ = {cfg.focal_gamma:g}, MSE "
                 "with a free bias)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    if deep:
        ax = axes[2]
        for i, loss in enumerate(losses):
            a = s[f"test_acc_{SHORT[loss]}"]
            ax.errorbar(i, a, yerr=[[a - s[f"test_acc_{SHORT[loss]}_lo"]],
                                    [s[f"test_acc_{SHORT[loss]}_hi"] - a]], fmt="o", capsize=5,
                        color="tab:green", label="test accuracy, 95% Wilson" if i == 0 else None)
            ax.text(i + 0.08, a, f"{a:.3f}", fontsize=8, va="center")
        ax.set_xticks(range(len(losses)), [SHORT[l] for l in losses])
        ax.set_ylabel("test accuracy (fraction)")
        pairs = [k for k in s if k.startswith("diff_") and not k.endswith(("_lo", "_hi"))]
        worst = max(pairs, key=lambda k: max(abs(s[k + "_lo"]), abs(s[k + "_hi"])), default=None)
        verdict = ("" if "acc_diff_agrees" not in s else
                   ("; agrees" if s["acc_diff_agrees"] else "; DISAGREES"))
        ax.set_title(f"{cfg.data.name}, {cfg.model.name} width {cfg.model.get('width', '?')}, "
                     f"n_test = {int(s['n_test'])}\nwidest paired difference "
                     f"{worst[5:].replace('_', '−')}: [{100 * s[worst + '_lo']:+.1f}, "
                     f"{100 * s[worst + '_hi']:+.1f}] points (claim ±{100 * cfg.acc_tol:g}){verdict}"
                     if worst else "", fontsize=10)
        ax.legend(fontsize=8, loc="best")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Are all losses created equal? CE, label smoothing (LS), focal (FL) and MSE in the "
                 "UFM and in deep nets", fontsize=11)
    fig.tight_layout()
    run.savefig(fig, "loss_family.png")
    return ["loss_family.png"]


EXPERIMENT = Experiment(
    name="loss_family",
    description="CE, label smoothing, focal loss, MSE (free bias): every random UFM start reaches a "
                "simplex ETF; deep nets' test accuracies with intervals (docs/science.md §5.2)",
    config=LossFamilyConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="Below its collapse-to-zero threshold, every UFM start of CE, label smoothing, focal "
              "loss and MSE with a free bias reaches the same simplex ETF (NC1-NC3), and deep nets "
              "trained with these losses reach largely the same test accuracy",
        source="docs/science.md §5.2; Zhou, You, Li, Liu, Liu, Qu, Zhu, Are all losses created "
               "equal? A neural collapse perspective (NeurIPS 2022)",
        regime="bounded",
        statistic="frac_etf_min",
        threshold=1.0,
        collapsed_below=False,
        theory=None,
        labels={"lam_w": "λ_W (weight decay of W)", "lam_h": "λ_H (weight decay of H)",
                "smoothing": "label smoothing α", "focal_gamma": "focal γ",
                "frac_etf_min": "fraction of starts reaching a simplex ETF (worst loss)",
                "acc_diff": "largest |accuracy difference| at 95% (fraction)"}),
    large={"num_classes": 10, "per_class": 10, "feature_dim": 11, "starts": 20,
           "data": "mnist_subset", "train_per_class": 300, "model.width": 1024,
           "train.epochs": 60},
    # small: a smoke test; 897 test images (< min_test), so no accuracy claim is made
    small={"starts": 2, "train_per_class": 90, "model.width": 32, "train.epochs": 3,
           "max_iter": 3000},
)
