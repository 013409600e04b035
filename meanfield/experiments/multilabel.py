"""Multi-label neural collapse with the pick-all-label (PAL) cross-entropy (docs/science.md §5.1).

Li, Wang, Li & Qu (ICML 2024): with the PAL cross-entropy, on data balanced within each
multiplicity (every label set of a given size has the same number of samples -- the paper's
assumption, built in here), the global optimisers of the UFM have (i) the single-label means
and classifier rows on a simplex ETF, and (ii) the "tag-wise average" property: the mean of the
samples carrying a set S of labels is a *scaled average* of the single-label means of its labels.

Two parts, one run:

1. **UFM** (:func:`meanfield.deep.ufm_multilabel.fit_multilabel_ufm`, L-BFGS, float64): ``num_labels``
   = K labels, every set of every size in ``multiplicities``, ``per_set`` samples each. Reported:
   ``ufm_deviation`` (the largest tag-wise deviation delta_S over the multi-label sets, the sine of
   the angle between the set mean and the average of its labels' means) with ``_theory`` 0 at
   ``dev_tol`` (the optimiser stops at gradient norm ``tol_grad`` = 1e-8, which leaves deviations
   of order 1e-7), ``ufm_nc2_etf`` / ``ufm_nc2_etf_w`` (ETF distance of the single-label means / of
   W) with ``_theory`` 0 at ``dev_tol``, ``ufm_nc1`` (within-class variability of the single-label
   samples), and the scale ``ufm_scale_m`` for every multiplicity m >= 2 (reported, no theory
   claimed) next to ``reduced_scale_m``, the scale of the reduced symmetric problem
   (:mod:`meanfield.theory.multilabel`, an independent computation that presumes the symmetric form).
2. **Net**: an MLP (``model``) trained with the PAL cross-entropy and weight decay (``train``:
   the samples are expanded into one (x, k) pair per label, the pick-all-labels reduction, so
   :func:`meanfield.deep.train.train` with ``cross_entropy`` and ``loss_scale`` = the mean
   multiplicity minimises exactly ``(1/N) sum_i l_PAL``) on a synthetic multi-label mixture: K
   Gaussian centres c_k in R^``input_dim`` (norm 1), a sample with set S at
   ``sum_{k in S} c_k + noise * N(0, I/input_dim)``, ``net_per_set`` samples per set. Reported
   (empirical, no ``_agrees``): ``net_deviation``, ``net_scale_m``, ``net_nc1`` and ``net_nc2_etf``
   of the single-label samples, ``net_within`` (Tr Sigma_W / Tr Sigma_B over the label sets), the
   final loss; history rows per recorded epoch.

Bounded regime (weight decay > 0); the statistic is ``net_deviation``, called collapsed below 0.1
(the sine of an angle of about 5.7 degrees between a set's mean and its tag-wise prediction, fixed
before looking at the net: the default MLP plateaus near 0.17 after 600 Adam epochs, so it is
reported as *not* reaching the tag-wise structure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..deep.train import TrainConfig
from ..study.spec import ModelSpec
from .registry import Experiment, ExperimentResult, RunContext, Science, agreement, parse_dtype


@dataclass(frozen=True)
class MultiLabelConfig:
    """Parameters.

    Attributes:
        num_labels: K, labels (>= 3).
        multiplicities: label-set sizes present (comma-separated; must include 1, each < K).
        per_set: UFM samples per label set.
        lam_w: UFM weight decay of W.
        lam_h: UFM weight decay of H (summed over samples).
        lam_b: UFM weight decay of the bias.
        feature_dim: UFM feature dimension d (None: K).
        tol_grad: UFM optimiser stop: gradient norm.
        max_iter: UFM optimiser stop: iterations.
        dev_tol: tolerance of the UFM deviation and ETF distances against 0.
        net_per_set: training samples per label set of the synthetic mixture.
        input_dim: input dimension of the mixture.
        noise: noise scale of the mixture (the centres have norm 1).
        model: the net (mlp: model.width, model.depth).
        train: PAL training: cross_entropy, train.weight_decay on every layer.
        record_every: net metrics every this many epochs.
        dtype: float32 or float64 for the net.
    """

    num_labels: int = 4
    multiplicities: tuple = (1, 2)
    per_set: int = 2
    lam_w: float = 1e-2
    lam_h: float = 1e-2
    lam_b: float = 1e-2
    feature_dim: int | None = None
    tol_grad: float = 1e-8
    max_iter: int = 20_000
    dev_tol: float = 1e-5
    net_per_set: int = 40
    input_dim: int = 16
    noise: float = 0.3
    model: ModelSpec = ModelSpec("mlp", {"width": 64, "depth": 3})
    train: TrainConfig = TrainConfig(optimizer="adam", lr=5e-3, epochs=600, weight_decay=1e-2,
                                     loss="cross_entropy", log_every=600)
    record_every: int = 25
    dtype: str = "float32"


def mixture(K: int, sets, per_set: int, input_dim: int, noise: float, *, seed: int = 0,
            dtype=torch.float32, device=None):
    """Synthetic multi-label mixture: ``X (n, input_dim)``, ``set_index (n,)``.

    Centres c_k are Gaussian, normalised to 1; a sample with label set S is
    ``sum_{k in S} c_k + noise * N(0, I / input_dim)``.
    """
    g = torch.Generator().manual_seed(int(seed))
    C = torch.randn(K, input_dim, generator=g, dtype=torch.float64)
    C = C / C.norm(dim=1, keepdim=True)
    idx = torch.arange(len(sets)).repeat_interleave(int(per_set))
    X = torch.stack([C[list(sets[i])].sum(0) for i in idx.tolist()])
    X = X + noise * torch.randn(X.shape, generator=g, dtype=torch.float64) / math.sqrt(input_dim)
    return X.to(dtype=dtype, device=device), idx.to(device)


def _check(cfg: MultiLabelConfig) -> None:
    if int(cfg.num_labels) != cfg.num_labels or cfg.num_labels < 3:
        raise ValueError(f"num_labels must be an integer >= 3 (a pair must leave a label out), got "
                         f"{cfg.num_labels!r}")
    if len(cfg.multiplicities) < 2:
        raise ValueError(f"multiplicities needs 1 and at least one size >= 2, got {cfg.multiplicities!r}")
    for k in ("per_set", "net_per_set", "input_dim", "record_every"):
        v = getattr(cfg, k)
        if int(v) != v or v < 1:
            raise ValueError(f"{k} must be an integer >= 1, got {v!r}")
    for k in ("noise", "dev_tol"):
        v = getattr(cfg, k)
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{k} must be finite and >= 0, got {v!r}")
    if cfg.train.loss != "cross_entropy":
        raise ValueError(f"the PAL loss is a sum of cross-entropies: train.loss must be cross_entropy, "
                         f"got {cfg.train.loss!r}")


def _geometry(H, set_index, sets, K, W=None, b=None) -> dict:
    """Tag-wise measures and single-label NC metrics of features H (n, p)."""
    from ..deep.ufm_multilabel import set_means, tagwise_average
    from ..metrics import neural_collapse
    M = set_means(H, set_index, len(sets))
    tagwise = tagwise_average(M, sets, K)
    tw = tagwise.by_size()
    single = set_index < K
    nc = neural_collapse(H[single], set_index[single], classifier=W, bias=b, num_classes=K, strict=False)
    allsets = neural_collapse(H, set_index, num_classes=len(sets), strict=False)
    out = {"deviation": max(v[2] for v in tw.values()), "deviation_mean": float(tagwise.deviation.mean()),
           "nc1": nc.nc1, "nc2_etf": nc.nc2_etf,
           "nc2_etf_w": nc.nc2_etf_w, "within": allsets.nc1_trace}
    for m, (c, spread, dev) in tw.items():
        out.update({f"scale_{m}": c, f"scale_spread_{m}": spread, f"deviation_{m}": dev})
    return {k: float("nan") if v is None else float(v) for k, v in out.items()}


def _projection(M, sets, K) -> list[dict]:
    """Set means in the plane of the two leading principal directions of the single-label means,
    with each multi-label set's tag-wise prediction c_S a_S (history rows of kind ``set``)."""
    single = M[:K]
    centre = single.mean(0)
    U = torch.linalg.svd((single - centre).T.double(), full_matrices=False)[0][:, :2].to(M.dtype)
    rows = []
    for i, S in enumerate(sets):
        v = M[i] - centre
        a = (single[list(S)] - centre).mean(0)
        c = float(v @ a / (a @ a))
        p, q = v @ U, (c * a) @ U
        rows.append({"kind": "set", "set": "+".join(str(k) for k in S), "size": len(S),
                     "x": float(p[0]), "y": float(p[1]), "pred_x": float(q[0]), "pred_y": float(q[1])})
    return rows


def _ufm(cfg: MultiLabelConfig, ctx: RunContext, summary: dict, history: list) -> None:
    from ..deep.ufm_multilabel import MultiLabelUFMConfig, fit_multilabel_ufm, set_means
    from ..theory.multilabel import symmetric_pal_ufm
    K = cfg.num_labels
    uc = MultiLabelUFMConfig(lW=cfg.lam_w, lH=cfg.lam_h, lb=cfg.lam_b, feature_dim=cfg.feature_dim,
                             tol_grad=cfg.tol_grad, max_iter=cfg.max_iter, seed=ctx.seed)
    r = fit_multilabel_ufm(K, cfg.multiplicities, cfg.per_set, uc, device=ctx.device)
    g = _geometry(r.H.T, r.set_index, r.sets, K, r.W, r.b)
    agreement(summary, "ufm_deviation", g.pop("deviation"), 0.0, cfg.dev_tol)
    agreement(summary, "ufm_nc2_etf", g.pop("nc2_etf"), 0.0, cfg.dev_tol)
    agreement(summary, "ufm_nc2_etf_w", g.pop("nc2_etf_w"), 0.0, cfg.dev_tol)
    summary.update({f"ufm_{k}": v for k, v in g.items()})
    red = symmetric_pal_ufm(K, cfg.multiplicities, cfg.per_set, cfg.lam_w, cfg.lam_h)
    summary.update({f"reduced_scale_{m}": c for m, c in red.scale.items() if m > 1})
    summary.update({"ufm_value": r.value, "reduced_value": red.value, "ufm_grad_norm": r.grad_norm,
                    "ufm_converged": r.converged, "ufm_trivial": float(r.W.norm()) < 1e-3})
    history += [{**row, "model": "ufm"} for row in
                _projection(set_means(r.H.T, r.set_index, len(r.sets)), r.sets, K)]


def _net(cfg: MultiLabelConfig, ctx: RunContext, summary: dict, history: list) -> None:
    from ..deep.train import train
    from ..deep.ufm_multilabel import label_sets, set_means
    from ..models import build_model
    K, dtype = cfg.num_labels, parse_dtype(cfg.dtype)
    sets = label_sets(K, cfg.multiplicities)
    X, sidx = mixture(K, sets, cfg.net_per_set, cfg.input_dim, cfg.noise, seed=ctx.seed, dtype=dtype,
                      device=ctx.device)
    rows = [(i, k) for i, s in enumerate(sidx.tolist()) for k in sets[s]]   # pick all labels
    first = torch.tensor([j for j, (i, _) in enumerate(rows) if j == 0 or rows[j - 1][0] != i])
    Xe = X[[i for i, _ in rows]]
    ye = torch.tensor([k for _, k in rows], device=ctx.device)
    mean_mult = len(rows) / X.shape[0]
    tc = replace(cfg.train, loss_scale=mean_mult, seed=cfg.train.seed + ctx.seed)
    model = build_model(cfg.model, cfg.input_dim, K, seed=ctx.seed, dtype=dtype, device=ctx.device)
    epochs = sorted(set(range(0, tc.epochs + 1, cfg.record_every)) | {tc.epochs})
    res = train(model, (Xe, ye), tc, feature_epochs=epochs, progress=ctx.progress)
    for e in epochs:
        H = res.features[e][first].to(torch.float64)
        try:
            g = _geometry(H, sidx.cpu(), sets, K)
        except ValueError:   # dead features at a recorded epoch: recorded as missing
            g = {"deviation": float("nan")}
        history.append({"kind": "epoch", "model": "net", "epoch": e, **g})
    model.eval()
    with torch.no_grad():
        h = model.features(X)
    W = model.classifier.weight.detach()
    b = model.classifier.bias.detach() if model.classifier.bias is not None else None
    g = _geometry(h.double(), sidx, sets, K, W.double(), None if b is None else b.double())
    summary.update({f"net_{k}": v for k, v in g.items()})
    summary.update({"net_loss": res.final["loss"], "net_samples": int(X.shape[0]),
                    "net_mean_multiplicity": mean_mult})
    history += [{**row, "model": "net"} for row in _projection(set_means(h.double(), sidx, len(sets)),
                                                               sets, K)]


def run(cfg: MultiLabelConfig, ctx: RunContext) -> ExperimentResult:
    _check(cfg)
    summary: dict = {"num_labels": cfg.num_labels}
    history: list = []
    _ufm(cfg, ctx, summary, history)
    _net(cfg, ctx, summary, history)
    return ExperimentResult(summary, history)


def _plane(ax, rows, title):
    from ..plotting import class_colour
    for r in rows:
        if r["size"] == 1:
            k = int(float(r["set"]))
            ax.plot(r["x"], r["y"], "o", ms=11, color=class_colour(k), zorder=3)
            ax.annotate(f"{{{k}}}", (r["x"], r["y"]), textcoords="offset points", xytext=(7, 7))
        else:
            ax.plot(r["pred_x"], r["pred_y"], "kx", ms=9, mew=2, zorder=4)
            ax.plot(r["x"], r["y"], "s", ms=7, mfc="none", color="tab:gray", zorder=4)
            ax.plot([r["x"], r["pred_x"]], [r["y"], r["pred_y"]], "k:", lw=1)
            ax.annotate("{" + r["set"].replace("+", ",") + "}", (r["x"], r["y"]), fontsize=7,
                        textcoords="offset points", xytext=(5, -10), color="tab:gray")
    ax.plot([], [], "o", color="tab:gray", label="single-label mean μ_k − μ_G (coloured by label k)")
    ax.plot([], [], "s", mfc="none", color="tab:gray", label="label-set mean μ_S − μ_G")
    ax.plot([], [], "kx", mew=2, label="tag-wise prediction c_S · mean_{k∈S}(μ_k − μ_G)")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("principal direction 1 of the single-label means (feature units)\n"
                  "(a 2-D projection of their (K − 1)-dim span; δ and c_S are measured in full)")
    ax.set_ylabel("principal direction 2 (feature units)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")


def plot(run) -> list[str]:
    """``multilabel.png``: the net's tag-wise deviation and NC1 against epochs, and the set means of
    the UFM optimum and of the net in the plane of the single-label means, from the run's files."""
    import matplotlib.pyplot as plt
    from .weight_decay import num
    cfg, hist = run.config, run.history
    s = {k: float("nan") if v is None else v for k, v in run.summary.items()}   # NaN is null in JSON
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.6))
    ax = axes[0]
    ep = [r for r in hist if r.get("kind") == "epoch"]
    for key, lab, col in (("deviation", "tag-wise deviation δ (max over sets |S| ≥ 2)", "tab:red"),
                          ("nc1", "NC1 of the single-label samples", "tab:blue"),
                          ("deviation_mean", "tag-wise deviation δ (mean over sets)", "tab:orange"),
        ("nc2_etf", "NC2: ETF distance of the single-label means", "tab:green")):
        pts = [(num(r, "epoch"), num(r, key)) for r in ep if num(r, key) is not None]
        if pts:
            ax.plot(*zip(*pts), "o-", ms=3, color=col, label=f"net: {lab}")
    thr = run.experiment.science.threshold
    ax.axhline(thr, color="k", ls=":", label=f"collapsed below δ = {thr:g}")
    ax.axhline(max(s["ufm_deviation"], 1e-12), color="tab:red", ls="--",
               label=f"UFM optimum: δ = {s['ufm_deviation']:.1e} (theory 0)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("dimensionless (log)")
    ax.set_title(f"net: final δ = {s['net_deviation']:.3g}, NC1 = {s['net_nc1']:.3g}", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    ms = sorted(int(m) for m in cfg.multiplicities if int(m) > 1)
    sc = lambda pre: ", ".join(f"c_{m} = {s.get(f'{pre}_scale_{m}', float('nan')):.3f}" for m in ms)
    _plane(axes[1], [r for r in hist if r.get("kind") == "set" and r.get("model") == "ufm"],
           f"UFM global optimum: {sc('ufm')}\n(reduced symmetric problem: {sc('reduced')})")
    _plane(axes[2], [r for r in hist if r.get("kind") == "set" and r.get("model") == "net"],
           f"MLP on the synthetic mixture: {sc('net')}")
    fig.suptitle(f"Multi-label NC with the pick-all-label CE: K = {cfg.num_labels} labels, label sets "
                 f"of sizes {tuple(cfg.multiplicities)} (balanced within each size); UFM λ_W = "
                 f"{cfg.lam_w:g}, λ_H = {cfg.lam_h:g}; net λ = {cfg.train.weight_decay}, "
                 f"{cfg.train.epochs} epochs", fontsize=11)
    fig.tight_layout()
    run.savefig(fig, "multilabel.png")
    return ["multilabel.png"]


EXPERIMENT = Experiment(
    name="multilabel",
    description="multi-label NC with the pick-all-label CE: UFM optimum and an MLP on a synthetic "
                "mixture; single-label means an ETF, label-set means scaled averages (docs/science.md §5.1)",
    config=MultiLabelConfig,
    run=run,
    plot=plot,
    science=Science(
        claim="with the pick-all-label CE (data balanced within each multiplicity) the single-label "
              "means form a simplex ETF and the mean of a label set is a scaled average of its "
              "labels' single-label means (tag-wise average)",
        source="Li, Wang, Li & Qu, Neural collapse in multi-label learning with pick-all-label loss "
               "(ICML 2024, arXiv:2310.15903); docs/science.md §5.1",
        regime="bounded",
        statistic="net_deviation",
        threshold=0.1,
        collapsed_below=True,
        theory=None,
        labels={"num_labels": "labels K", "lam_w": "λ_W (UFM weight decay of W)",
                "lam_h": "λ_H (UFM weight decay of H)", "train.weight_decay": "net weight decay λ",
                "noise": "mixture noise (centres of norm 1)",
                "net_deviation": "tag-wise deviation δ of the net (sine)",
                "ufm_deviation": "tag-wise deviation δ at the UFM optimum (sine)",
                "net_scale_2": "tag-wise scale c₂ of the net", "ufm_scale_2": "tag-wise scale c₂ (UFM)"}),
    large={"num_labels": 6, "multiplicities": (1, 2, 3), "net_per_set": 40, "model.width": 128,
           "train.epochs": 800},
    small={"per_set": 1, "net_per_set": 10, "model.width": 32, "train.epochs": 60, "train.log_every": 60,
           "record_every": 20},
)
