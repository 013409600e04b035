"""Neural collapse with normalised features: the UFM on spheres, and deep nets (docs/science.md §5.4).

Yaras, Wang, Zhu, Balzano & Qu (NeurIPS 2022): with features and classifier rows constrained to
unit spheres, the cross-entropy UFM (temperature tau multiplying the logits, balanced classes) has
a benign landscape on the product of spheres -- the only global minimisers are simplex ETFs with
``h_i = w_{y_i}`` and every other critical point is a strict saddle -- so Riemannian gradient
descent from a random start reaches an ETF. Two parts, one run:

1. **UFM on spheres** (:func:`meanfield.deep.ufm_sphere.fit_sphere_ufm`, float64): ``starts`` random
   starts (uniform on the spheres, seeds ``seed, seed + 1, ...``), K = ``num_classes``, n =
   ``per_class``, d = ``feature_dim``. A start *reaches the ETF* when its value is within
   ``value_tol`` of the ETF value log(1 + (K-1) exp(-tau K/(K-1))), the ETF distance of W
   (``nc2_etf_w``) and the largest ``|h_i - w_{y_i}|`` are both below ``etf_tol``. Reported:
   ``fraction_etf`` with ``_theory`` 1 when an ETF fits (d >= K - 1) and 0 otherwise (no ETF
   exists), tolerance 0 (every start must); ``value_gap_max`` (largest value minus the ETF value
   over the starts), ``iterations_max``, ``converged_fraction``.
2. **Deep nets**: an MLP (``model``) on ``data`` (digits by default) trained with cross-entropy
   (``train``), with plain penultimate features against features normalised to a sphere of
   radius ``feature_scale`` (:class:`meanfield.deep.ufm_sphere.NormalizedFeatures`), the same
   initialisation, optimiser and weight decay otherwise, over ``seeds`` seeds. Reported
   (empirical, no ``_agrees``): ``epochs_to_nc1_<arm>`` (mean over the seeds that got there of
   the first recorded epoch with NC1 below ``nc1_threshold``), ``reached_<arm>`` (fraction of
   seeds that got there), ``final_nc1_<arm>`` (mean final NC1) and ``speedup`` (plain over
   normalised epochs). The default threshold 0.5 is one both arms reach within the default budget
   (the plain arm plateaus near NC1 = 0.45 on digits; the normalised one goes on to about 0.05).

Bounded regime; statistic ``fraction_etf`` (collapsed above 0.99).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..deep.train import TrainConfig
from ..study.spec import DataSpec, ModelSpec
from .registry import (Experiment, ExperimentResult, RunContext, Science, Theory, agreement,
                       parse_dtype)

ARMS = ("plain", "normalized")


@dataclass(frozen=True)
class NormalizedConfig:
    """Parameters.

    Attributes:
        num_classes: K, classes of the UFM.
        per_class: n, UFM samples per class.
        feature_dim: d, UFM feature dimension (an ETF fits when d >= K - 1).
        tau: temperature of the UFM (multiplies the logits, > 0).
        starts: random starts of the UFM.
        lr: initial Riemannian step.
        tol_grad: stop: Riemannian gradient norm.
        max_iter: stop: iterations per start.
        etf_tol: a start reached the ETF when nc2_etf_w and max |h_i - w_{y_i}| are below this.
        value_tol: ... and its value is within this of the ETF value.
        data: data set of the deep part (digits; data.per_class images per class).
        model: the net (mlp: model.width, model.depth).
        train: cross-entropy training, the same for both arms.
        feature_scale: radius of the normalised features (the temperature of the net).
        seeds: seeds of the deep part (one net per seed and arm).
        record_every: NC1 every this many epochs.
        nc1_threshold: NC1 below this counts as collapsed (epochs to NC1 below it).
        dtype: float32 or float64 for the nets.
    """

    num_classes: int = 4
    per_class: int = 5
    feature_dim: int = 5
    tau: float = 2.0
    starts: int = 20
    lr: float = 1.0
    tol_grad: float = 1e-8
    max_iter: int = 5000
    etf_tol: float = 1e-4
    value_tol: float = 1e-10
    data: DataSpec = DataSpec("digits", {"per_class": 50})
    model: ModelSpec = ModelSpec("mlp", {"width": 64, "depth": 3})
    train: TrainConfig = TrainConfig(optimizer="adam", lr=5e-3, epochs=150, weight_decay=5e-4,
                                     loss="cross_entropy", log_every=150)
    feature_scale: float = 5.0
    seeds: int = 3
    record_every: int = 5
    nc1_threshold: float = 0.5
    dtype: str = "float32"


def _check(cfg: NormalizedConfig) -> None:
    for k in ("num_classes", "per_class", "feature_dim", "starts", "seeds", "record_every"):
        v = getattr(cfg, k)
        if int(v) != v or v < (2 if k in ("num_classes", "feature_dim") else 1):
            raise ValueError(f"{k} must be an integer >= {2 if k in ('num_classes', 'feature_dim') else 1}, "
                             f"got {v!r}")
    for k in ("tau", "feature_scale", "etf_tol", "value_tol", "nc1_threshold"):
        v = getattr(cfg, k)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{k} must be a finite number > 0, got {v!r}")
    if cfg.train.loss != "cross_entropy":
        raise ValueError(f"the normalised-feature claim is about the cross-entropy: train.loss must be "
                         f"cross_entropy, got {cfg.train.loss!r}")


def _sphere(cfg: NormalizedConfig, ctx: RunContext, summary: dict, history: list) -> None:
    from ..deep.ufm_sphere import SphereUFMConfig, etf_value, fit_sphere_ufm
    from ..metrics import neural_collapse
    K, d = cfg.num_classes, cfg.feature_dim
    f_etf = etf_value(K, cfg.tau)
    reached, gaps, iters, conv = [], [], [], []
    for s in range(cfg.starts):
        sc = SphereUFMConfig(tau=cfg.tau, feature_dim=d, lr=cfg.lr, tol_grad=cfg.tol_grad,
                             max_iter=cfg.max_iter, seed=ctx.seed + s)
        r = fit_sphere_ufm(K, cfg.per_class, sc, device=ctx.device, record_every=10)
        nc = neural_collapse(r.H.T, r.labels, classifier=r.W, strict=False)
        etf_w = float("nan") if nc.nc2_etf_w is None else float(nc.nc2_etf_w)
        dist = float((r.H - r.W[r.labels].T).norm(dim=0).max())
        gap = r.value - f_etf
        ok = abs(gap) <= cfg.value_tol and etf_w <= cfg.etf_tol and dist <= cfg.etf_tol
        reached.append(ok), gaps.append(gap), iters.append(r.iterations), conv.append(r.converged)
        history += [{"kind": "ufm", "start": s, "iteration": it, "value_gap": v - f_etf,
                     "grad_norm": g, "reached": ok} for it, v, g in r.trace]
        history.append({"kind": "ufm_final", "start": s, "value_gap": gap, "nc2_etf_w": etf_w,
                        "h_to_w": dist, "reached": ok, "iterations": r.iterations})
    agreement(summary, "fraction_etf", sum(reached) / cfg.starts, 1.0 if d >= K - 1 else 0.0, 0.0)
    summary.update({"value_etf": f_etf, "value_gap_max": max(gaps), "iterations_max": max(iters),
                    "converged_fraction": sum(conv) / cfg.starts, "etf_fits": d >= K - 1})


def _first_below(hist: list, thr: float) -> float:
    for r in hist:
        v = r.get("nc1")
        if v is not None and math.isfinite(v) and v < thr:
            return float(r["epoch"])
    return float("nan")


def _nets(cfg: NormalizedConfig, ctx: RunContext, summary: dict, history: list) -> None:
    from ..deep.train import train
    from ..deep.ufm_sphere import NormalizedFeatures
    from ..models import build_model
    from .weight_decay import load_data
    dtype = parse_dtype(cfg.dtype)
    s = load_data(cfg.data, standardise="global").sample(seed=0, dtype=dtype, device=ctx.device)
    out = {a: {"epochs": [], "final": []} for a in ARMS}
    for seed in range(ctx.seed, ctx.seed + cfg.seeds):
        for arm in ARMS:
            net = build_model(cfg.model, s.d, s.num_classes, seed=seed, dtype=dtype, device=ctx.device)
            if arm == "normalized":
                net = NormalizedFeatures(net, cfg.feature_scale)
            tc = replace(cfg.train, seed=cfg.train.seed + seed)
            res = train(net, s, tc, record_every=cfg.record_every, progress=ctx.progress)
            rows = [r for r in res.history if "nc1" in r]
            out[arm]["epochs"].append(_first_below(rows, cfg.nc1_threshold))
            out[arm]["final"].append(rows[-1]["nc1"])
            history += [{"kind": "net", "arm": arm, "seed": seed, "epoch": r["epoch"], "nc1": r["nc1"],
                         "nc2_etf": r.get("nc2_etf"), "loss": r["loss"], "accuracy": r["accuracy"]}
                        for r in rows]
    for arm in ARMS:
        got = [e for e in out[arm]["epochs"] if math.isfinite(e)]
        summary[f"epochs_to_nc1_{arm}"] = sum(got) / len(got) if got else float("nan")
        summary[f"reached_{arm}"] = len(got) / cfg.seeds
        fin = [v for v in out[arm]["final"] if v is not None and math.isfinite(v)]
        summary[f"final_nc1_{arm}"] = sum(fin) / len(fin) if fin else float("nan")
    summary["speedup"] = summary["epochs_to_nc1_plain"] / summary["epochs_to_nc1_normalized"]


def run(cfg: NormalizedConfig, ctx: RunContext) -> ExperimentResult:
    _check(cfg)
    summary: dict = {"num_classes": cfg.num_classes, "feature_dim": cfg.feature_dim, "tau": cfg.tau}
    history: list = []
    _sphere(cfg, ctx, summary, history)
    _nets(cfg, ctx, summary, history)
    return ExperimentResult(summary, history)


def plot(run) -> list[str]:
    """``normalized.png``: the UFM value gap of every start against iterations, and NC1 of the nets
    with and without normalised features against epochs, from the run's files."""
    import matplotlib.pyplot as plt
    from .weight_decay import num
    cfg, hist = run.config, run.history
    s = {k: float("nan") if v is None else v for k, v in run.summary.items()}   # NaN is null in JSON
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.4))
    starts = sorted({int(r["start"]) for r in hist if r.get("kind") == "ufm"})
    for st in starts:
        pts = [(num(r, "iteration"), max(num(r, "value_gap"), 1e-17)) for r in hist
               if r.get("kind") == "ufm" and int(r["start"]) == st and num(r, "value_gap") is not None]
        ok = str(pts and [r for r in hist if r.get("kind") == "ufm_final" and int(r["start"]) == st][0]
                 .get("reached")) in ("True", "1.0", "1")
        ax1.plot(*zip(*pts), color="tab:blue" if ok else "tab:red", alpha=0.6, lw=1)
    ax1.plot([], [], color="tab:blue", label="a start that reached the ETF")
    ax1.plot([], [], color="tab:red", label="a start that did not")
    ax1.axhline(cfg.value_tol, color="k", ls=":", label=f"value tolerance {cfg.value_tol:g}")
    ax1.set_yscale("log")
    ax1.set_xlabel("Riemannian gradient descent iteration")
    ax1.set_ylabel("f(W, H) − f_ETF (nats, log)")
    ax1.set_title(f"UFM on spheres, K = {cfg.num_classes}, n = {cfg.per_class}, d = {cfg.feature_dim}, "
                  f"τ = {cfg.tau:g}: {s['fraction_etf']:.0%} of {cfg.starts} starts reach the ETF "
                  f"(theory {s['fraction_etf_theory']:.0%})", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3, which="both")
    colours = {"plain": "tab:gray", "normalized": "tab:green"}
    names = {"plain": "plain features", "normalized": f"features normalised to radius {cfg.feature_scale:g}"}
    for arm in ARMS:
        rows = [r for r in hist if r.get("kind") == "net" and r.get("arm") == arm]
        for sd in sorted({num(r, "seed") for r in rows}):
            pts = [(num(r, "epoch"), num(r, "nc1")) for r in rows if num(r, "seed") == sd
                   and num(r, "nc1") is not None]
            if pts:
                ax2.plot(*zip(*pts), color=colours[arm], alpha=0.7, lw=1.2)
        e = s[f"epochs_to_nc1_{arm}"]
        ax2.plot([], [], color=colours[arm], label=f"{names[arm]}: NC1 < {cfg.nc1_threshold:g} after "
                 f"{e:.0f} epochs (mean, {s[f'reached_{arm}']:.0%} of seeds); final NC1 "
                 f"{s[f'final_nc1_{arm}']:.3g}" if math.isfinite(e) else
                 f"{names[arm]}: NC1 never below {cfg.nc1_threshold:g}; final NC1 "
                 f"{s[f'final_nc1_{arm}']:.3g}")
        if math.isfinite(e):
            ax2.axvline(e, color=colours[arm], ls="--", lw=1)
    ax2.axhline(cfg.nc1_threshold, color="k", ls=":", label=f"threshold NC1 = {cfg.nc1_threshold:g}")
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("NC1 = Tr(Σ_W Σ_B⁺)/C (log)")
    mp = cfg.model.kwargs
    ax2.set_title(f"{cfg.model.name} (depth {mp.get('depth')}, width {mp.get('width')}) on {cfg.data.name}, "
                  f"{cfg.seeds} seed(s) per arm: " + (f"speed-up {s['speedup']:.2f}×" if math.isfinite(s["speedup"])
                  else "speed-up undefined (an arm never reached the threshold)"), fontsize=10)
    lo, hi = ax2.get_ylim()
    ax2.set_ylim(lo, hi * 6)                     # room for the legend above the curves
    ax2.legend(fontsize=7.5, loc="upper right")
    ax2.grid(alpha=0.3, which="both")
    fig.suptitle("Neural collapse with normalised features (Yaras et al. 2022): landscape of the "
                 "UFM on spheres, and collapse speed of deep nets", fontsize=11)
    fig.tight_layout()
    run.savefig(fig, "normalized.png")
    return ["normalized.png"]


def _fits(p) -> float:
    """Negative exactly when a simplex ETF of K vectors fits in dimension d (d >= K - 1)."""
    return (p["num_classes"] - 1) - p["feature_dim"] - 0.5


EXPERIMENT = Experiment(
    name="normalized",
    description="normalised features: the UFM on spheres reaches the simplex ETF from every random "
                "start (Riemannian GD); deep nets collapse faster with normalised features (docs/science.md §5.4)",
    config=NormalizedConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="with features and classifier rows on spheres the CE UFM's only global minimisers are "
              "simplex ETFs and other critical points are strict saddles: every random start of "
              "Riemannian GD reaches an ETF",
        source="Yaras, Wang, Zhu, Balzano & Qu, Neural collapse with normalized features: a geometric "
               "analysis over the Riemannian manifold (NeurIPS 2022, arXiv:2209.09211); docs/science.md §5.4",
        regime="bounded",
        statistic="fraction_etf",
        threshold=0.99,
        collapsed_below=False,
        theory=Theory(_fits, ("feature_dim", "num_classes"), "theory: an ETF fits iff d ≥ K − 1",
                      collapsed="negative"),
        labels={"tau": "temperature τ (multiplies the logits)", "feature_dim": "feature dimension d",
                "num_classes": "classes K", "fraction_etf": "fraction of starts reaching the ETF",
                "feature_scale": "radius of the normalised features",
                "speedup": "epochs to NC1 < threshold: plain / normalised"}),
    large={"num_classes": 10, "feature_dim": 11, "per_class": 10, "starts": 50,
           "data.per_class": 150, "model.width": 256, "train.epochs": 300, "seeds": 5},
    small={"starts": 4, "data.per_class": 10, "model.width": 32, "train.epochs": 20,
           "train.log_every": 20, "seeds": 1, "record_every": 5},
)
