"""The finite-width experiments (weight_decay, deep_collapse, ufm, ufm_collapse, fixed_etf,
simplex_optimality) at small sizes, and their composed configs (data, model, train).

Each experiment's numbers with a theory are asserted with the tolerance its docstring states
(read back from the summary, and checked equal to the module constant so that nobody loosens one
here); the weight-decay experiment only reports, so its test checks the bookkeeping and a
consequence that holds at any size: the decay arm's weights are smaller (the penalty is paid).
"""

import json
import math

import pytest
import torch

from meanfield.experiments import ufm as ufm_exp
from meanfield.experiments.fixed_etf import split, state_saving_theory
from meanfield.experiments.registry import get_experiment, resolve_config, run_experiment
from meanfield.study.spec import describe
from meanfield.theory.ufm import collapse_margin, extended_ufm, mse_ufm

TRAINING = ("weight_decay", "deep_collapse", "fixed_etf")
MINE = TRAINING + ("ufm", "ufm_collapse", "simplex_optimality")


def test_ufm_matches_closed_forms_across_threshold(tmp_path):
    # 4 points through both thresholds (ext ~0.069, MSE/CE ~0.144 for K = 4, n = 3): 0.02, 0.049,
    # 0.118, 0.3, none inside the ill-conditioned bands
    res = run_experiment("ufm", {"lam_num": 4, "lam_min": 0.02, "lam_max": 0.3, "restarts": 3},
                         out=tmp_path / "u")
    s = json.loads((tmp_path / "u" / "summary.json").read_text())
    for case in ufm_exp.CASES:
        assert s[f"value_err_{case}_tol"] == ufm_exp.VALUE_TOL == 1e-9
        assert s[f"normW2_err_{case}_tol"] == ufm_exp.NORM_TOL == 1e-5
        assert s[f"value_err_{case}"] <= 1e-9, case
        assert s[f"normW2_err_{case}"] <= 1e-5, case
        assert s[f"value_err_{case}_agrees"] and s[f"normW2_err_{case}_agrees"]
        assert s[f"points_{case}"] == 4
    # both sides of the thresholds are on the grid: nonzero and zero norms
    for case in ufm_exp.CASES:
        w = [r["normW2_theory"] for r in res.history if r["case"] == case]
        assert max(w) > 1 and min(w) == 0.0, case
    assert s["threshold_lam"] == pytest.approx(1 / (4 * math.sqrt(3)))
    assert (tmp_path / "u" / "ufm_vs_lambda.png").stat().st_size > 10_000


def test_ufm_thresholds_and_band():
    K, n = 4, 3
    thr = ufm_exp.threshold(K, n)
    assert mse_ufm(K, n, 0.99 * thr, 0.99 * thr).scale > 0 and mse_ufm(K, n, 1.01 * thr, 1.01 * thr).scale == 0
    te = ufm_exp.ext_threshold(K, n)
    assert extended_ufm(K, n, *[0.999 * te] * 3).s > 0 and extended_ufm(K, n, *[1.001 * te] * 3).s == 0
    assert ufm_exp.ill_conditioned("mse_none", K, n, thr * 1.05, 0.1)
    assert not ufm_exp.ill_conditioned("ce", K, n, thr * 2, 0.1)
    with pytest.raises(ValueError, match="unknown case"):
        run_experiment("ufm", {"cases": "mse_none,bogus"}, write=False)


def test_fixed_etf_accuracy_and_memory(tmp_path):
    res = run_experiment("fixed_etf", {"train.epochs": 12, "seeds": 1, "model.width": 128},
                         out=tmp_path / "f")
    s = res.summary
    # the tolerance is the stated binomial 3-sigma bound
    a, n_test = s["test_acc_learned"], s["n_test"]
    assert s["test_acc_gap_tol"] == pytest.approx(3 * math.sqrt(2 * max(a * (1 - a), 0.0099) / n_test))
    assert abs(s["test_acc_gap"]) <= s["test_acc_gap_tol"]
    assert s["test_acc_gap_agrees"]
    assert s["test_acc_learned"] > 0.9 and s["test_acc_fixed"] > 0.9
    # exact memory count
    assert s["state_saving_tol"] == 1e-12
    assert abs(s["state_saving"] - state_saving_theory("mlp", 64, 10, 128, 4)) <= 1e-12
    assert s["state_saving_agrees"] and s["state_saving"] > 0.2
    assert s["fixed_buffer_bytes"] == 10 * 10 * 4
    assert s["learned_optimizer_bytes"] == s["learned_param_bytes"]  # one momentum buffer each
    assert (tmp_path / "f" / "fixed_etf.png").exists()


def test_state_saving_theory_counts_parameters():
    # mlp 2 -> [3, 3] -> 2 learned: (2*3+3) + (3*3+3) + (3*2+2) = 29; fixed: 2 -> [3, 2] -> ETF:
    # (2*3+3) + (3*2+2) = 17 trainable + a 2x2 buffer
    assert state_saving_theory("mlp", 2, 2, 3, 3) == pytest.approx(1 - (3 * 17 + 4) / (3 * 29))
    # bias-free: learned 6 + 9 + 6 = 21, fixed 6 + 6 = 12
    assert state_saving_theory("deep", 2, 2, 3, 3) == pytest.approx(1 - (3 * 12 + 4) / (3 * 21))


def test_fixed_etf_split_is_disjoint_and_standardised():
    from meanfield.experiments.weight_decay import load_data
    from meanfield.study.spec import DataSpec
    full = load_data(DataSpec("digits"), standardise="none").sample(dtype=torch.float64)
    tr, te = split(full, 50, seed=3)
    assert tr.n == 500 and te.n == full.n - 500
    assert torch.bincount(tr.y).tolist() == [50] * 10
    assert float(tr.X.mean()) == pytest.approx(0.0, abs=1e-10)
    assert float(tr.X.std(unbiased=False)) == pytest.approx(1.0, abs=1e-10)
    rows = {tuple(x) for x in tr.X.tolist()}
    assert sum(tuple(x) in rows for x in te.X.tolist()) < 5  # digits has a few duplicate images
    with pytest.raises(ValueError, match="train_per_class"):
        split(full, 500)


def test_weight_decay_reports_per_arm(tmp_path):
    cfg = {"data.per_class": 20, "model.width": 32, "model.depth": 3, "train.epochs": 6, "seeds": 2,
           "record_every": 3, "train.batch_size": 50, "train.weight_decay": 5e-3, "train.lr": 0.05}
    res = run_experiment("weight_decay", cfg, out=tmp_path / "w")
    s = res.summary
    for arm in ("decay", "no_decay"):
        for key in ("nc1", "nc2_etf", "nc2_etf_w", "nc3", "nc4", "loss", "accuracy"):
            assert math.isfinite(s[f"{key}_{arm}_mean"]) and s[f"{key}_{arm}_spread"] >= 0
    assert not any(k.endswith("_agrees") for k in s)  # this experiment reports, it claims nothing
    assert s["nc_loss_floor"] == pytest.approx(1 / (2 * 10 ** 2))
    assert s["layer_balance_residual_max"] > 0
    # the history holds both arms and every seed, NC metrics at the recorded epochs
    rows = res.history
    assert {(r["arm"], r["seed"]) for r in rows} == {(a, i) for a in ("decay", "no_decay") for i in (0, 1)}
    assert sorted({r["epoch"] for r in rows if "nc1" in r}) == [0, 3, 6]
    assert {"nc_metrics.png", "loss.png"} <= {p.name for p in (tmp_path / "w").iterdir()}
    # the figures come from the run directory's files alone: redrawn after deleting them
    from meanfield.study import plot_run
    for f in (tmp_path / "w").glob("*.png"):
        f.unlink()
    assert plot_run(tmp_path / "w") == ["nc_metrics.png", "loss.png"]
    assert (tmp_path / "w" / "loss.png").stat().st_size > 10_000


def test_weight_decay_arms_share_initialisation_and_decay_shrinks_weights():
    """Same seed, same data order: the arms differ only by the penalty, so the decayed net ends
    with a smaller total weight norm (the penalty's gradient is -lam W at every step)."""
    from meanfield.deep.models import DeepHomogeneousMLP
    from meanfield.deep.train import TrainConfig, train
    from meanfield.data.real import digits
    s = digits(per_class=20).sample(dtype=torch.float64)
    norms = {}
    for lam in (0.0, 5e-2):
        m = DeepHomogeneousMLP(s.d, 32, 3, 10, seed=0, dtype=torch.float64)
        train(m, s, TrainConfig(lr=0.05, momentum=0.9, epochs=5, batch_size=50, weight_decay=lam, seed=0))
        norms[lam] = sum(float((W.detach() ** 2).sum()) for W in m.weights())
    assert norms[5e-2] < norms[0.0]


def test_weight_decay_bad_inputs():
    with pytest.raises(ValueError, match="unknown distribution 'imagenet'; valid: .*digits"):
        run_experiment("weight_decay", {"data": "imagenet"}, write=False)
    with pytest.raises(ValueError, match="folder"):  # mnist/cifar10 read data.folder
        run_experiment("weight_decay", {"data": "mnist"}, write=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_experiment("weight_decay", {"data": "mnist", "data.folder": "/nonexistent/mnist"},
                       write=False)
    with pytest.raises(ValueError, match="train.weight_decay"):
        run_experiment("weight_decay", {"train.weight_decay": 0}, write=False)
    with pytest.raises(ValueError, match="deep"):
        run_experiment("weight_decay", {"model": "mlp", "data.per_class": 2, "train.epochs": 1,
                                        "seeds": 1}, write=False)


@pytest.mark.parametrize("name", MINE)
def test_large_and_small_overrides_resolve(name):
    exp = get_experiment(name)
    assert exp.small, "every experiment states its quick-look overrides"
    resolve_config(exp, exp.small)  # every key is a parameter of the experiment
    if name != "simplex_optimality":
        assert exp.large, "every experiment states its GPU-sized overrides"
        resolve_config(exp, exp.large)


@pytest.mark.parametrize("name", TRAINING)
def test_dotted_keys_reach_train_config(name):
    """Every TrainConfig field is reachable with --set train.X, parsed by the field's type."""
    from dataclasses import fields

    from meanfield.deep.train import TrainConfig
    exp = get_experiment(name)
    cfg = resolve_config(exp, {"train.lr": "0.025", "train.momentum": "0.5", "train.epochs": "7",
                               "train.batch_size": "none", "train.weight_decay": "1e-4,2e-4",
                               "train.schedule": "step", "train.milestones": "2,5",
                               "train.nesterov": "true", "model.width": "16", "data.per_class": "9"})
    assert isinstance(cfg.train, TrainConfig)
    assert (cfg.train.lr, cfg.train.momentum, cfg.train.epochs) == (0.025, 0.5, 7)
    assert cfg.train.batch_size is None and cfg.train.nesterov is True
    assert cfg.train.weight_decay == (1e-4, 2e-4) and cfg.train.milestones == (2, 5)
    assert cfg.model.kwargs["width"] == 16 and cfg.data.kwargs["per_class"] == 9
    keys = {row[0] for row in describe(exp.config())}
    for f in fields(TrainConfig):  # a nested config field is listed by its own dotted keys
        assert any(k == f"train.{f.name}" or k.startswith(f"train.{f.name}.") for k in keys), f.name
    assert {"data", "model", "model.width", "model.depth"} <= keys
    # a value of the wrong type names the key; TrainConfig's own validation still runs
    with pytest.raises(ValueError, match="train.epochs"):
        resolve_config(exp, {"train.epochs": "many"})
    with pytest.raises(ValueError, match="unknown optimizer"):
        resolve_config(exp, {"train.optimizer": "lbfgs"})


@pytest.mark.parametrize("name", MINE)
def test_unknown_key_lists_valid_ones(name):
    exp = get_experiment(name)
    with pytest.raises(ValueError, match=r"unknown parameter 'bogus'.*valid: .*(seeds|tol_grad|record_every)"):
        resolve_config(exp, {"bogus": 1})
    if name in TRAINING:
        with pytest.raises(ValueError, match=r"'train.lrr'.*valid: optimizer, lr, momentum"):
            resolve_config(exp, {"train.lrr": 1})
        with pytest.raises(ValueError, match=r"model.activatio.*its parameters: width, depth"):
            resolve_config(exp, {"model": "deep", "model.activatio": "tanh"})


@pytest.mark.parametrize("name", MINE)
def test_every_field_documented(name):
    exp = get_experiment(name)
    for key, _, _, meaning in describe(exp.config()):
        if key.count(".") == 0:
            assert meaning, f"{name}: field {key!r} has no line in the Attributes: docstring"


def test_ufm_collapse_theory_is_the_one_boundary():
    exp = get_experiment("ufm_collapse")
    th = exp.science.theory
    p = {"num_classes": 4, "per_class": 3, "lam_w": 0.05, "lam_h": 0.08}
    assert th.fn(p) == collapse_margin(4, 3, 0.05, 0.08) == 4 * math.sqrt(3 * 0.05 * 0.08) - 1
    assert th.predicts_collapse(p) and not th.predicts_collapse({**p, "lam_w": 0.5})
    assert set(th.keys) <= {row[0] for row in describe(exp.config())}
    assert exp.science.statistic == "normW" and exp.science.labels["lam_w"]


def test_science_statistics_are_summary_keys():
    """Each experiment's statistic is a key its summary writes (checked on the pinned summaries)."""
    import json
    from pathlib import Path
    pinned = json.loads((Path(__file__).parent / "fixtures" / "summaries_small.json").read_text())
    for name in MINE:
        sci = get_experiment(name).science
        assert sci.claim and sci.source.startswith("docs/science.md §3.")
        if sci.statistic is not None:
            assert sci.statistic.strip("|") in pinned[name]["summary"], name
