"""loss_family, the figure: ``loss_family.png`` from a run's files."""

from __future__ import annotations

from .loss_family_ufm import CRITERIA, SHORT


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
