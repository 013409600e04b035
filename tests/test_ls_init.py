"""ls_init: least-squares rows for new classes against an independent solver, the minimum of the
initial MSE over the new rows, the protocol at a tiny size, bad input.

Oracles: numpy's lstsq / a dense ridge solve (1e-8, float64 round-off on well-conditioned
problems), and the fact that least-squares rows minimise the initial task-2 MSE over every choice
of new rows (so no perturbation and no random draw can do better).
"""

import numpy as np
import pytest
import torch

from meanfield.experiments.ls_init import least_squares_rows
from meanfield.experiments.registry import run_experiment


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _problem(n=40, p=6, C=5, new=range(3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    H = torch.randn(n, p, generator=g, dtype=torch.float64)
    y = torch.cat([torch.arange(C), torch.randint(0, C, (n - C,), generator=g)])
    return H, y, new


@pytest.mark.parametrize("ridge", [0.0, 0.7])
def test_rows_against_an_independent_solver(ridge):
    H, y, new = _problem()
    W, b = least_squares_rows(H, y, new, ridge=ridge)
    A = np.hstack([H.numpy(), np.ones((len(H), 1))])
    Y = np.eye(new.stop)[y.numpy()][:, new.start:]
    if ridge == 0:
        sol = np.linalg.lstsq(A, Y, rcond=None)[0]
    else:
        R = ridge * np.eye(A.shape[1])
        R[-1, -1] = 0
        sol = np.linalg.solve(A.T @ A + R, A.T @ Y)
    np.testing.assert_allclose(W.numpy(), sol[:-1].T, atol=1e-8)
    np.testing.assert_allclose(b.numpy(), sol[-1], atol=1e-8)


def test_rows_minimise_the_initial_mse_over_the_new_rows():
    H, y, new = _problem(seed=3)
    W, b = least_squares_rows(H, y, new)
    E = torch.nn.functional.one_hot(y, new.stop)[:, new.start:].double()

    def loss(W, b):
        return float(((H @ W.T + b - E) ** 2).sum())

    best = loss(W, b)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        dW = 1e-3 * torch.randn(W.shape, generator=g, dtype=W.dtype)
        db = 1e-3 * torch.randn(b.shape, generator=g, dtype=b.dtype)
        assert loss(W + dW, b + db) > best
        assert loss(torch.randn(W.shape, generator=g, dtype=W.dtype), b) > best


@pytest.mark.parametrize("bad", ["nan", "label", "ridge", "missing", "shape"])
def test_rows_refuse_bad_input(bad):
    H, y, new = _problem()
    kw = {}
    if bad == "nan":
        H[0, 0] = float("nan")
    elif bad == "label":
        y[0] = new.stop
    elif bad == "ridge":
        kw["ridge"] = -1.0
    elif bad == "missing":
        y[y == 4] = 0
    else:
        H = H[:-1]
    with pytest.raises(ValueError):
        least_squares_rows(H, y, new, **kw)


TINY = {"seeds": 2, "train_per_class": 20, "replay_per_class": 3, "model.width": 16,
        "train.epochs": 3, "task2.epochs": 6}


def test_experiment_least_squares_start_is_never_above_random():
    res = run_experiment("ls_init", TINY, write=False)
    s = res.summary
    assert s["n_task1"] == 5 * 20 and s["n_task2"] == 5 * 20 + 5 * 3
    # exact for MSE: least squares minimises the initial loss over the new rows
    assert s["frac_ls_lower_spike"] == 1.0 and s["spike_gain"] > 0
    for arm in ("ls", "random"):
        assert s[f"spike_{arm}_lo"] <= s[f"spike_{arm}"] <= s[f"spike_{arm}_hi"]
        assert 0 <= s[f"recover_steps_{arm}"] <= 7
    assert not any(k.endswith("_agrees") for k in s)  # an empirical claim: no theory keys
    steps = {(r["seed"], r["arm"]) for r in res.history}
    assert len(steps) == 4 and len(res.history) == 4 * 7


@pytest.mark.parametrize("bad", [{"num_old": 10}, {"num_old": 0}, {"replay_per_class": 0},
                                 {"task2.batch_size": 16}, {"seeds": 0}, {"recover_factor": -1.0}])
def test_experiment_refuses_bad_input(bad):
    with pytest.raises(ValueError):
        run_experiment("ls_init", {**TINY, **bad}, write=False)
