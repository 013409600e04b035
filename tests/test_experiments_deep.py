"""The finite-width experiments (weight_decay, ufm, fixed_etf) at small sizes.

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
from meanfield.theory.ufm import extended_ufm, mse_ufm


def test_ufm_matches_closed_forms_across_threshold(tmp_path):
    # 4 points through both thresholds (ext ~0.069, MSE/CE ~0.144 for K = 4, n = 3): 0.02, 0.049,
    # 0.118, 0.3, none inside the ill-conditioned bands
    res = run_experiment("ufm", {"num": 4, "lam_min": 0.02, "lam_max": 0.3, "restarts": 3},
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
    res = run_experiment("fixed_etf", {"epochs": 12, "seeds": 1, "width": 128}, out=tmp_path / "f")
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
    assert state_saving_theory("homogeneous_mlp", 2, 2, 3, 3) == pytest.approx(1 - (3 * 12 + 4) / (3 * 21))


def test_fixed_etf_split_is_disjoint_and_standardised():
    from meanfield.experiments.weight_decay import load_dataset
    full = load_dataset("digits", standardise="none").sample(dtype=torch.float64)
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
    cfg = {"per_class": 20, "width": 32, "depth": 3, "epochs": 6, "seeds": 2, "record_every": 3,
           "batch_size": 50, "lam": 5e-3, "lr": 0.05}
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


def test_weight_decay_arms_share_initialisation_and_decay_shrinks_weights():
    """Same seed, same data order: the arms differ only by the penalty, so the decayed net ends
    with a smaller total weight norm (the penalty's gradient is -lam W at every step)."""
    from meanfield.deep.models import DeepHomogeneousMLP
    from meanfield.deep.train import TrainConfig, train
    from meanfield.experiments.weight_decay import load_dataset
    s = load_dataset("digits", per_class=20).sample(dtype=torch.float64)
    norms = {}
    for lam in (0.0, 5e-2):
        m = DeepHomogeneousMLP(s.d, 32, 3, 10, seed=0, dtype=torch.float64)
        train(m, s, TrainConfig(lr=0.05, momentum=0.9, epochs=5, batch_size=50, weight_decay=lam, seed=0))
        norms[lam] = sum(float((W.detach() ** 2).sum()) for W in m.weights())
    assert norms[5e-2] < norms[0.0]


def test_weight_decay_bad_inputs():
    with pytest.raises(ValueError, match="unknown dataset"):
        run_experiment("weight_decay", {"dataset": "imagenet"}, write=False)
    with pytest.raises(ValueError, match="data_dir"):
        run_experiment("weight_decay", {"dataset": "mnist_files"}, write=False)
    with pytest.raises(ValueError, match="lam"):
        run_experiment("weight_decay", {"lam": 0}, write=False)


@pytest.mark.parametrize("name", ["weight_decay", "ufm", "fixed_etf"])
def test_large_overrides_resolve(name):
    exp = get_experiment(name)
    assert exp.large, "every experiment states its GPU-sized overrides"
    resolve_config(exp, exp.large)  # every key is a parameter of the experiment
