"""fixed_etf, the figures: ``fixed_etf.png`` of the mlp preset and of the resnet18 preset, from a
run's files."""

from __future__ import annotations

from .fixed_etf import ARMS, width_depth
from .weight_decay import num


def _finals(history) -> dict:
    """Final train/test accuracy of every (arm, seed), from the history rows."""
    last: dict = {}
    for r in history:
        last[(r.get("arm"), num(r, "seed"))] = r
    return {arm: [{"train": num(r, "accuracy"), "test": num(r, "test_accuracy")}
                  for (a, _), r in last.items() if a == arm] for arm in ARMS}


def _memory_panel(ax, s, colors, unit: float, unit_name: str, buffers: str = "buffers (frozen ETF)") -> None:
    """Stacked training state (parameters, gradients, optimiser, buffers) and the step peak per arm."""
    parts = ("param_bytes", "grad_bytes", "optimizer_bytes", "buffer_bytes")
    names = ("parameters", "gradients", "optimiser state", buffers)
    for j, arm in enumerate(ARMS):
        bottom = 0.0
        for i, (p, nm) in enumerate(zip(parts, names)):
            v = s[f"{arm}_{p}"] / unit
            ax.bar(j, v, 0.5, bottom=bottom, color=("0.25", "0.5", "0.75", "tab:red")[i], edgecolor="k",
                   label=nm if j == 0 else None)
            bottom += v
        ax.text(j, bottom, f"{bottom:.0f} {unit_name}" if bottom >= 10 else f"{bottom:.2f} {unit_name}", ha="center", va="bottom", fontsize=8)
        pk = s[f"{arm}_peak_step_bytes"] / unit
        ax.bar(j + 2.2, pk, 0.5, color=colors[arm], edgecolor="k", hatch="//",
               label=f"peak of one step ({arm})")
        ax.text(j + 2.2, pk, f"{pk:.0f} {unit_name}" if pk >= 10 else f"{pk:.2f} {unit_name}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks([0, 1, 2.2, 3.2], ["learned\n(state)", "fixed ETF\n(state)", "learned\n(step peak)",
                                    "fixed ETF\n(step peak)"])
    ax.set_ylim(0, 1.12 * ax.get_ylim()[1])
    ax.set_ylabel(f"memory ({unit_name})")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)


def plot_resnet(run) -> list[str]:
    """``fixed_etf.png`` of the resnet18 preset: training losses, memory account, savings."""
    import matplotlib.pyplot as plt
    cfg, s, r = run.config, run.summary, run.config.resnet
    colors = {"learned": "tab:blue", "fixed": "tab:green"}
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [1, 1.3, 0.8]})
    for arm in ARMS:
        pts = [(num(q, "step"), num(q, "loss")) for q in run.history if q.get("arm") == arm]
        if pts:
            ax1.plot(*zip(*pts), "o-", ms=3, color=colors[arm], label=f"{arm} (last-3 mean "
                     f"{s[f'loss_{arm}']:.3g}, batch acc {s[f'batch_acc_{arm}']:.2f})")
    ax1.set_xlabel("SGD step")
    ax1.set_ylabel("mini-batch cross-entropy (nats)")
    ax1.set_title(f"Training, same mini-batches ({int(s['batch'])} images, {cfg.train.optimizer} lr "
                  f"{cfg.train.lr:g})", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    _memory_panel(ax2, s, colors, 2 ** 20, "MiB", "buffers (BatchNorm stats, frozen ETF)")
    ax2.set_title(f"Training state (stacked) and measured step peak ({run.record.get('device', 'cpu')}, "
                  f"batch {int(s['batch'])})", fontsize=10)
    ax2.legend(fontsize=7, loc="upper left")
    keys = (("param_saving", "trainable\nscalars"), ("state_saving", "training\nstate"),
            ("peak_saving", "peak of\none step"), ("total_saving", "resident +\nstep peak"))
    vals = [100 * s[k] for k, _ in keys]
    ax3.bar(range(4), vals, 0.6, color=["0.4", "tab:purple", "tab:olive", "tab:cyan"], edgecolor="k")
    for i, v in enumerate(vals):
        ax3.text(i, v, f"{v:.1f}%", ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    ax3.axhline(100 * s["published_saving"], color="k", ls="--", label="published: over 20 % (Zhu et al. 2021)")
    ax3.axhline(0, color="k", lw=0.8)
    ax3.set_xticks(range(4), [k[1] for k in keys], fontsize=8)
    ax3.set_ylabel("saving of the fixed arm, 1 − fixed/learned (%)")
    ax3.set_ylim(min(0.0, min(vals)) - 2, max(25.0, max(vals)) * 1.15)
    ax3.set_title(f"state saving {100 * s['state_saving']:.3g}% (exact count "
                  f"{100 * s['state_saving_theory']:.3g}%)", fontsize=10)
    ax3.legend(fontsize=8, loc="upper right")
    ax3.grid(axis="y", alpha=0.3)
    data = "synthetic CIFAR-shaped images" if s["synthetic"] else cfg.data.name
    fig.suptitle(f"Fixed simplex-ETF classifier at ResNet-18 scale — widths {','.join(map(str, r.widths))}, "
                 f"C = {int(s['num_classes'])}, fixed arm reduced to C by '{r.reduce}', {data} (3×32×32)",
                 fontsize=11)
    fig.tight_layout()
    run.savefig(fig, "fixed_etf.png")
    return ["fixed_etf.png"]


def plot_mlp(run) -> list[str]:
    """``fixed_etf.png`` of the mlp preset: accuracies per arm and the memory account."""
    import matplotlib.pyplot as plt
    import numpy as np
    cfg, s = run.config, run.summary
    finals = _finals(run.history)
    width, depth = width_depth(cfg)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1, 1.5]})
    colors = {"learned": "tab:blue", "fixed": "tab:green"}
    x = np.arange(2)
    for j, arm in enumerate(ARMS):
        for k, off in (("train", -0.18), ("test", 0.18)):
            vals = [f[k] for f in finals[arm]]
            m = sum(vals) / len(vals)
            ax1.bar(j + off, m, 0.34, color=colors[arm], alpha=1.0 if k == "test" else 0.45,
                    yerr=[[m - min(vals)], [max(vals) - m]], capsize=4,
                    label=f"{k} accuracy" if j == 0 else None, edgecolor="k")
            ax1.text(j + off, m + 0.003, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    lo = min(min(f[k] for f in finals[a] for k in ("train", "test")) for a in ARMS)
    ax1.set_ylim(max(0.0, lo - 0.1), 1.02)
    ax1.set_xticks(x, ["learned classifier", "fixed simplex ETF"])
    ax1.set_ylabel("accuracy (fraction correct)")
    gap, tol = s["test_acc_gap"], s["test_acc_gap_tol"]
    ax1.set_title(f"Accuracy (n_train = {int(s['n_train'])}, n_test = {int(s['n_test'])}; bars: mean,\n"
                  f"whiskers: min–max over {cfg.seeds} seeds); test gap {gap:+.3f}, tolerance "
                  f"±{tol:.3f}: {'agrees' if s['test_acc_gap_agrees'] else 'DISAGREES'}", fontsize=9)
    ax1.legend(fontsize=8, loc="lower right")
    ax1.grid(axis="y", alpha=0.3)

    _memory_panel(ax2, s, colors, 1024, "KiB")
    ax2.set_title(f"Training state (stacked) and measured step peak ({run.record.get('device', 'cpu')})\n"
                  f"state saving {100 * s['state_saving']:.1f}% (theory "
                  f"{100 * s['state_saving_theory']:.1f}%), peak saving {100 * s['peak_saving']:.1f}%",
                  fontsize=10)
    act = cfg.model.get("activation", "relu") if cfg.model.name == "mlp" else "relu"
    fig.suptitle(f"Fixed simplex-ETF classifier vs learned — {cfg.data.name}, {cfg.model.name} ({act}) "
                 f"depth {depth}, width {width}, C = {int(s['num_classes'])}, {cfg.train.optimizer} + "
                 f"cross-entropy", fontsize=11)
    fig.tight_layout()
    run.savefig(fig, "fixed_etf.png")
    return ["fixed_etf.png"]
