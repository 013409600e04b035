"""Finite-width deep pipeline: weight-decay identities (docs/science.md §3.4), the two-layer net against
the mean-field flow (§2 scalings), training loop, fixed-ETF classifier and its memory."""

import math

import pytest
import torch

from meanfield import FlowConfig, Particles, Samples, simulate
from meanfield.deep.fixed_etf import ETFClassifier, etf_weight, fix_classifier
from meanfield.deep.memory import measure_memory
from meanfield.deep.models import ConvNet, DeepHomogeneousMLP, MLP, TwoLayerMeanField, build_model
from meanfield.deep.train import TrainConfig, collect_features, train
from meanfield.theory.deep import (last_layer_stationarity, layer_balance, nc_loss_without_decay,
                                   quasi_interpolation, symmetric_quasi_interpolation)

F64 = torch.float64


def _one_hot_samples(C, n=1):
    X = torch.eye(C, dtype=F64).repeat_interleave(n, 0)
    return Samples.from_masses(X, torch.arange(C).repeat_interleave(n), dtype=F64)


def _blobs(C=3, n=6, d=4, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(C, d, generator=g, dtype=dtype)
    X = centres.repeat_interleave(n, 0) + 0.2 * torch.randn(C * n, d, generator=g, dtype=dtype)
    return Samples.from_masses(X, torch.arange(C).repeat_interleave(n), dtype=dtype)


# ------------------------------------------------------------------ weight-decay identities
def test_layer_balance_and_last_layer_stationarity_after_gd():
    """Full-batch GD on a bias-free depth-3 ReLU net, lambda > 0, to gradient norm 1e-10.
    One-hot inputs: no pre-activation sits at a ReLU kink at the optimum, so GD converges."""
    C, lam = 3, 2e-2
    s = _one_hot_samples(C, n=2)
    model = DeepHomogeneousMLP(C, 8, 3, C, dtype=F64, seed=1)
    res = train(model, s, TrainConfig(lr=0.5, epochs=10_000, weight_decay=lam, tol_grad=1e-10,
                                      log_every=10 ** 9))
    assert res.grad_norm is not None and res.grad_norm < 1e-9, res.grad_norm
    lb = layer_balance(model, s, lam)
    assert lb.rhs > 0.01  # a nontrivial critical point
    assert len(lb.residuals) == 3 and lb.max_residual < 1e-6, lb
    assert last_layer_stationarity(model, s, lam) < 1e-6
    # the identities can fail: at initialisation they do not hold
    fresh = DeepHomogeneousMLP(C, 8, 3, C, dtype=F64, seed=1)
    assert layer_balance(fresh, s, lam).max_residual > 1e-2


def _equivariant(C, r_in, r_out, g, scale):
    """A random S_C-equivariant block matrix: A on the diagonal blocks, B off them."""
    A = torch.randn(r_out, r_in, generator=g, dtype=F64) * scale
    B = torch.randn(r_out, r_in, generator=g, dtype=F64) * scale
    eye = torch.eye(C, dtype=F64)
    return torch.kron(eye, A) + torch.kron(1 - eye, B)


@pytest.mark.parametrize("C,lam", [(3, 1e-2), (4, 5e-3)])
def test_symmetric_quasi_interpolation_eps_formulas(C, lam):
    """Symmetric data (x = e_c) and an S_C-equivariant init, which GD preserves: the net
    quasi-interpolates symmetrically, f = (1 - eps) e_c + delta (1 - e_c). Checked: the eps
    formulas for W_L's rows and norm (module docstring of meanfield.theory.deep), and for depth 2
    the closed form eps = C^2 lambda (nuclear-norm shrinkage of Y = I with loss (1/2NC))."""
    r = 3
    s = _one_hot_samples(C)
    model = DeepHomogeneousMLP(C, C * r, 2, C, dtype=F64)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.hidden[0].weight.copy_(_equivariant(C, 1, r, g, 1.0))
        model.classifier.weight.copy_(_equivariant(C, r, 1, g, math.sqrt(2 / (C * r))))
    res = train(model, s, TrainConfig(lr=1.0, epochs=6000, weight_decay=lam, tol_grad=1e-10,
                                      log_every=10 ** 9))
    assert res.grad_norm < 1e-9
    q = quasi_interpolation(model, s, lam)
    assert q.symmetry_residual < 1e-9
    assert q.row_residual < 1e-3 and q.norm_residual < 1e-3
    assert q.row_norm_spread < 1e-9
    assert q.eps == pytest.approx(C * C * lam, rel=1e-6)
    # the paper's delta = eps/(C-1) case does not arise: a bias-free net shrinks the mean output
    assert not q.paper_case
    # the paper's formulas are the delta = eps/(C-1) special case of the general ones
    pred = symmetric_quasi_interpolation(0.2, C, lam)
    assert pred["row_norm2"] * C * lam == pytest.approx((0.2 * (1 - 0.2) - 0.2 ** 2 / (C - 1)) / C)


def test_nc_loss_without_decay_is_positive():
    C = 4
    for alpha in (0.5, (C - 1) / C, 1.0):
        # direct: outputs alpha on the class, -alpha/(C-1) elsewhere
        f = alpha * C / (C - 1) * (torch.eye(C, dtype=F64) - 1.0 / C)
        direct = 0.5 * ((torch.eye(C, dtype=F64) - f) ** 2).sum(1).mean()
        assert nc_loss_without_decay(alpha, C) == pytest.approx(float(direct), rel=1e-12)
    assert nc_loss_without_decay((C - 1) / C, C) == pytest.approx(1 / (2 * C))


# ------------------------------------------------------------------ two-layer net vs mean-field flow
def test_two_layer_net_matches_particles_outputs():
    P = Particles.gaussian(20, 3, 2, seed=4, activation="tanh")
    net = TwoLayerMeanField.from_particles(P)
    X = torch.randn(7, 3, dtype=F64)
    torch.testing.assert_close(net(X), P.predict(X, backend="dense")[0], rtol=0, atol=1e-13)
    back = net.to_particles()
    assert torch.equal(back.a, P.a) and torch.equal(back.w, P.w) and torch.equal(back.b, P.b)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_sgd_is_the_euler_scheme_of_the_flow(loss):
    """SGD, lr = eta m, torch weight_decay = lambda/m, on the data term sum_j p_j l (loss_scale 1):
    theta <- theta - eta m grad_theta(data) - eta lambda theta  ==  Euler step eta of
    d theta/dt = -m grad_theta R with R = data + (lambda/2m) sum |theta_i|^2."""
    m, eta, lam, K = 16, 0.05, 0.1, 10
    s = _blobs(C=3, n=4, d=2, seed=1)
    P = Particles.gaussian(m, 2, 3, seed=2)
    flow = simulate(P, s, FlowConfig(loss=loss, lam=lam, dt=eta, t_end=K * eta, stepping="fixed",
                                     integrator="euler", backend="dense"))

    def run(wd):
        net = TwoLayerMeanField.from_particles(P)
        train(net, s, TrainConfig(optimizer="sgd", lr=eta * m, epochs=K, weight_decay=wd, loss=loss,
                                  loss_scale=1.0, log_every=10 ** 9))
        return net.to_particles()

    Q = run(lam / m)
    for name in ("a", "w", "b"):
        torch.testing.assert_close(getattr(Q, name), getattr(flow.particles, name), rtol=0, atol=1e-10)
    wrong = run(lam)  # torch's weight_decay is added to the gradient: lambda itself is m times too much
    assert (wrong.a - flow.particles.a).abs().max() > 1e-4


# ------------------------------------------------------------------ training loop
def test_train_is_deterministic_and_records_metrics():
    s = _blobs(C=3, n=10, d=5, dtype=torch.float32)
    cfg = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, epochs=6, batch_size=8, weight_decay=1e-3,
                      schedule="cosine", seed=5)
    r1 = train(MLP(5, 16, 3, 3, seed=0), s, cfg, record_every=3, feature_epochs=(6,))
    r2 = train(MLP(5, 16, 3, 3, seed=0), s, cfg, record_every=3, feature_epochs=(6,))
    assert r1.history == r2.history
    assert [row["epoch"] for row in r1.history] == list(range(7))
    assert "nc1" in r1.history[3] and "nc1" not in r1.history[2] and "nc4" in r1.final
    assert r1.final["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0
    assert r1.features[6].shape == (30, 16)
    assert r1.steps == 6 * math.ceil(30 / 8)
    h, f = collect_features(r1.model, s)
    torch.testing.assert_close(h, r1.features[6])


@pytest.mark.parametrize("opt", ["adam", "adamw"])
def test_train_decreases_cross_entropy(opt):
    s = _blobs(C=3, n=10, d=5, dtype=torch.float32)
    r = train(DeepHomogeneousMLP(5, 16, 3, 3), s,
              TrainConfig(optimizer=opt, lr=1e-2, epochs=30, loss="cross_entropy",
                          schedule="step", milestones=(20,), gamma=0.5))
    assert r.final["loss"] < 0.5 * r.history[0]["loss"]
    assert r.final["lr"] == pytest.approx(5e-3)


def test_mse_convention_is_one_over_2NC():
    s = _blobs(C=3, n=4, d=2)
    model = DeepHomogeneousMLP(2, 4, 2, 3, dtype=F64)
    r = train(model, s, TrainConfig(epochs=0))
    f = model(s.X).detach()
    Y = torch.nn.functional.one_hot(s.y, 3).to(F64)
    assert r.final["loss"] == pytest.approx(float(((Y - f) ** 2).sum() / (2 * s.n * 3)), rel=1e-12)


def test_convnet_on_images_and_fixed_etf():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 1 * 8 * 8, generator=g)
    s = Samples.from_masses(X, torch.arange(4).repeat(3))
    model = fix_classifier(ConvNet(1, 4, channels=(4,), feature_dim=4))
    assert isinstance(model.classifier, ETFClassifier)
    assert all(p is not model.classifier.weight for p in model.parameters())
    W = model.classifier.weight
    G = W @ W.T
    torch.testing.assert_close(G.diagonal(), torch.ones(4))
    torch.testing.assert_close(G[0, 1], torch.tensor(-1 / 3))
    r = train(model, s, TrainConfig(optimizer="adam", lr=1e-2, epochs=3, loss="cross_entropy",
                                    input_shape=(1, 8, 8)), record_every=3)
    assert torch.equal(model.classifier.weight, W)  # frozen
    assert r.final["nc2_etf_w"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="feature dimension"):
        fix_classifier(ConvNet(1, 4, channels=(4,), feature_dim=8))


def test_memory_saving_counts_exactly():
    d, C, w, depth = 20, 5, 64, 4
    rep = measure_memory(model="mlp", d_in=d, num_classes=C, width=w, depth=depth, batch=16)
    n_learned = (d * w + w) + (w * w + w) * (depth - 2) + (w * C + C)
    n_fixed = (d * w + w) + (w * w + w) * (depth - 3) + (w * C + C)  # last hidden -> C, ETF frozen
    assert rep.learned.num_trainable == n_learned and rep.fixed.num_trainable == n_fixed
    for st in (rep.learned, rep.fixed):  # SGD with momentum: one buffer per parameter
        assert st.grad_bytes == st.param_bytes == st.optimizer_bytes == 4 * st.num_trainable
    assert rep.fixed.buffer_bytes == 4 * C * C
    assert rep.state_saving == pytest.approx(1 - (12 * n_fixed + 4 * C * C) / (12 * n_learned))
    assert rep.learned.peak_step_bytes > 0 and rep.fixed.peak_step_bytes < rep.learned.peak_step_bytes


# ------------------------------------------------------------------ bad input
def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="weight_decay"):
        train(DeepHomogeneousMLP(2, 4, 3, 3), _blobs(d=2, dtype=torch.float32),
              TrainConfig(weight_decay=(1e-3, 1e-3)))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", 2, 3)
    with pytest.raises(ValueError, match="depth"):
        DeepHomogeneousMLP(2, 4, 1, 3)
    with pytest.raises(ValueError):
        etf_weight(1)
    with pytest.raises(ValueError, match="lam"):
        layer_balance(DeepHomogeneousMLP(3, 4, 2, 3, dtype=F64), _one_hot_samples(3), 0.0)


def test_training_logs_nan_metrics_when_features_die():
    """A net whose features are all zero has degenerate class means: the metrics are NaN and
    flagged, and training does not stop."""
    import math
    from meanfield.deep.models import DeepHomogeneousMLP
    from meanfield.deep.train import TrainConfig, evaluate
    from meanfield.metrics import DegenerateMeansError, neural_collapse
    X = torch.randn(30, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s = Samples.from_masses(X, torch.arange(30) % 3, dtype=torch.float64)
    model = DeepHomogeneousMLP(4, 8, 3, 3, dtype=torch.float64)
    with torch.no_grad():
        model.layers()[0][0].zero_()  # every feature is 0
    with pytest.raises(DegenerateMeansError, match="degenerate"):
        neural_collapse(model.features(s.X), s.y)
    row = evaluate(model, s, TrainConfig(), metrics=True)
    assert row["nc_degenerate"] == 1.0 and math.isnan(row["nc1"])
