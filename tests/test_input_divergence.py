"""Inputs refused up front and training blow-ups reported as errors:

- a training loss that jumps by orders of magnitude (Adam at a huge lr) raises DivergenceError
  (it used to be reported as a normal result);
- three_atoms refuses q1 = 0 / q3 = 0 before anything runs (they failed after the whole run);
- ``mse`` with one output refuses more than 2 classes (it trained on targets -1, 1, 3).
"""

import math

import pytest
import torch

from meanfield import FlowConfig, Particles, Samples, simulate
from meanfield.cli import main
from meanfield.divergence import DivergenceCheck, DivergenceError, EpochMonitor
from meanfield.losses import get_loss


# ----------------------------------------------------------------------------- 1. training jumps
def test_epoch_monitor_jump_over_the_best():
    mon = EpochMonitor(DivergenceCheck(window=5, rtol=0.5), start=0.78)
    with pytest.raises(DivergenceError, match=r"epoch 1 \(step 1\).*jumped to 16571.*0\.78.*"
                                              r"lower the learning rate \(train\.lr\)"):
        mon.observe(16571.0, epoch=1, step=1)
    # without a start, the first epoch is the reference
    mon = EpochMonitor(DivergenceCheck(window=5, rtol=0.5))
    mon.observe(2.0, epoch=1, step=1)
    mon.observe(1.0, epoch=2, step=2)
    with pytest.raises(DivergenceError, match="epoch 3.*jumped to 5000.*best so far \\(1\\b"):
        mon.observe(5000.0, epoch=3, step=3)
    # switched off with the other checks
    EpochMonitor(DivergenceCheck(enabled=False), start=1.0).observe(1e9, epoch=1, step=1)


def test_epoch_monitor_spikes_from_near_zero_are_noise():
    """Adam spikes once a loss is near zero: the best is floored at 1e-2 of the start."""
    mon = EpochMonitor(DivergenceCheck(window=5, rtol=0.5), start=1.0)
    for e, v in enumerate([0.5, 1e-2, 1e-4, 1e-7, 3.0, 1e-3, 1e-6], start=1):  # 3e7-fold spike
        mon.observe(v, epoch=e, step=e)
    with pytest.raises(DivergenceError, match="jumped"):
        mon.observe(11.0, epoch=8, step=8)   # > 1e3 * max(1e-7, 1e-2 * 1)
    # an objective that may be negative (a registered loss) never trips the jump rule
    mon = EpochMonitor(DivergenceCheck(window=5, rtol=0.5), start=-1.0)
    mon.observe(-0.5, epoch=1, step=1)


def test_training_jump_is_a_divergence_in_train():
    from meanfield.deep.models import MLP
    from meanfield.deep.train import TrainConfig, train
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 2, generator=g)
    data = Samples.from_masses(X, (X[:, 0] > 0).long(), dtype=torch.float32)
    net = MLP(2, 16, 2, 1, seed=0)
    cfg = TrainConfig(optimizer="adam", lr=1e6, epochs=5, loss="logistic", weight_decay=1e-2)
    with pytest.raises(DivergenceError, match=r"epoch 1 .*jumped.*lower the learning rate"):
        train(net, data, cfg, record_every=0)
    # normal Adam training on the same data does not trip it
    net = MLP(2, 16, 2, 1, seed=0)
    res = train(net, data, TrainConfig(optimizer="adam", lr=1e-2, epochs=30, loss="logistic",
                                       weight_decay=1e-2), record_every=0)
    assert math.isfinite(res.history[-1]["loss"])


def test_training_checkpoint_keeps_the_best(tmp_path):
    from meanfield.deep.checkpoint import TrainCheckpoint
    from meanfield.deep.models import MLP
    from meanfield.deep.train import TrainConfig, train
    g = torch.Generator().manual_seed(1)
    X = torch.randn(20, 2, generator=g)
    data = Samples.from_masses(X, (X[:, 0] > 0).long(), dtype=torch.float32)
    cfg = TrainConfig(optimizer="adam", lr=1e-2, epochs=4, loss="logistic")
    ck = TrainCheckpoint(tmp_path / "ck.pt", every=0)
    train(MLP(2, 8, 2, 1, seed=0), data, cfg, record_every=0, checkpoint=ck)
    saved = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert saved["monitor_best"] is not None and saved["monitor_best"] <= min(saved["monitor"])
    ck2 = TrainCheckpoint(tmp_path / "ck.pt")
    mon = EpochMonitor(DivergenceCheck(), start=100.0)
    ck2.begin(MLP(2, 8, 2, 1, seed=0), data, cfg)
    ck2.restore(MLP(2, 8, 2, 1, seed=0), *_opt_sched_gen(cfg))
    ck2.attach(mon)
    assert mon.best == saved["monitor_best"]


def _opt_sched_gen(cfg):
    from meanfield.deep.models import MLP
    from meanfield.deep.train import _optimizer, _scheduler
    net = MLP(2, 8, 2, 1, seed=0)
    opt = _optimizer(net, cfg)
    return opt, _scheduler(opt, cfg), torch.Generator()


@pytest.mark.parametrize("args", [
    ["model=mlp", "train.lr=10", "train.epochs=100"],
    ["model=two_layer", "train.lr=1e6", "train.epochs=20"],
])
def test_cli_adam_blow_up_is_an_error(tmp_path, capsys, args):
    argv = ["run", "collapse", "--set", "n=50", "--out", str(tmp_path / "run")]
    for a in args:
        argv += ["--set", a]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("meanfield: error:") and "Traceback" not in err
    for part in ("DivergenceError", "epoch 1", "jumped", "train.lr"):
        assert part in err, (part, err)


# ----------------------------------------------------------------------------- 2. three_atoms q
@pytest.mark.parametrize("q", ["q1", "q3"])
def test_three_atoms_refuses_zero_q_up_front(q, monkeypatch):
    from meanfield.experiments import three_atoms
    from meanfield.study import run_experiment

    def never(*a, **k):
        raise AssertionError("the flow ran")
    monkeypatch.setattr(three_atoms, "simulate", never)
    with pytest.raises(ValueError, match=r"q1 and q3 must be > 0 \(the law log\(q3 p3 / 2 q1 p1\) "
                                         r"needs them\)"):
        run_experiment("three_atoms", {q: 0.0}, write=False)
    with pytest.raises(ValueError, match="q1 and q3 must be > 0"):
        run_experiment("three_atoms", {q: -1.0}, write=False)


def test_three_atoms_zero_q3_then_corrected_into_the_same_out(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["run", "three_atoms", "--set", "q3=0", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meanfield: error: q1 and q3 must be > 0") and "Traceback" not in err
    assert main(["run", "three_atoms", "--set", "q3=1", "--set", "m=60",
                 "--set", "flow.t_end=1e4", "--out", out]) == 0


# ----------------------------------------------------------------------------- 3. mse, k = 1
def test_mse_one_output_needs_two_classes():
    msg = r"loss 'mse' with 1 output needs 2 classes \(±1 targets\); got 3 classes: use 3 outputs \(k = 3\)"
    with pytest.raises(ValueError, match=msg):
        get_loss("mse").check(1, 3)
    get_loss("mse").check(1, 2)
    get_loss("mse").check(3, 3)
    three = Samples.from_masses(torch.tensor([[-1.], [0.], [1.]]), [0, 1, 2])
    net = Particles.at_positions([(-1, 0), (1, 1), (1, 0)], m=30, activation="smoothstep")
    with pytest.raises(ValueError, match=msg):
        simulate(net, three, FlowConfig(loss="mse", t_end=1))


def test_collapse_mse_one_output_three_classes():
    from meanfield.study import run_experiment
    with pytest.raises(ValueError, match=r"loss 'mse' with 1 output needs 2 classes.*k = 3"):
        run_experiment("collapse", {"data": "gaussian_mixture",
                                    "data.means": [[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]],
                                    "model.outputs": 1, "model.m": 20, "flow.loss": "mse", "n": 30,
                                    "flow.t_end": 1.0}, write=False)
