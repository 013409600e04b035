"""Property-based bad inputs over the public API: every one is a ValueError or TypeError whose
message names the argument -- never another exception, a hang, or a silent (NaN) result.

Each hypothesis example is one bad input; :data:`TRIED` counts them per test and the last test
of the file prints the total (``pytest -s tests/test_faults_props.py``). Examples are derandomized
so CI is deterministic; the counts are kept modest (2 shared CPU cores).
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import math
import pickle
import re
import signal
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meanfield
import meanfield.cli
from meanfield import FlowConfig, Particles, Samples, neural_collapse
from meanfield.data import get_distribution, list_distributions
from meanfield.data.real import cifar10, mnist, read_cifar_batch, read_idx
from meanfield.deep.train import TrainConfig
from meanfield.study.experiment import get_experiment
from meanfield.study.spec import apply_overrides

TRIED: collections.Counter = collections.Counter()
TIMEOUT_S = 20  # one bad input that takes longer than this is a hang

N = 4  # examples per kind of bad input (every kind is its own parametrized case)
PROPS = settings(max_examples=N, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                        HealthCheck.filter_too_much])

NONFINITE = st.sampled_from([math.nan, math.inf, -math.inf])
NEGATIVE = st.floats(max_value=-1e-9, min_value=-1e12, allow_nan=False)
NOT_A_NUMBER = st.sampled_from(["abc", "", None, "1.0`", "\u00e9", [], {}])


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: int):
    def boom(*_):
        raise _Hang(f"no answer within {seconds} s")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _names_in(msg: str, names) -> bool:
    return any(re.search(r"(?<![A-Za-z0-9_])" + re.escape(str(n)) + r"(?![A-Za-z0-9_])", msg)
               for n in names)


def expect_bad(tag: str, fn, names, *, result_ok=None):
    """``fn()`` must raise ValueError/TypeError naming one of ``names`` (synonyms of the argument)."""
    TRIED[tag] += 1
    try:
        with _deadline(TIMEOUT_S):
            out = fn()
    except _Hang as e:
        pytest.fail(f"{tag}: hang ({e})")
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert _names_in(msg, names), f"{tag}: {type(e).__name__} does not name any of {names}: {msg!r}"
        assert "\n" not in msg.strip() or len(msg) < 2000, f"{tag}: unwieldy message {msg!r}"
        return e
    except Exception as e:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{tag}: {type(e).__name__} instead of ValueError/TypeError: {e}")
    if result_ok is not None and result_ok(out):
        return None
    pytest.fail(f"{tag}: bad input accepted silently, returned {out!r}"[:600])


# ----------------------------------------------------------------------------- Samples
def _good_samples(n, d, C):
    X = torch.arange(n * d, dtype=torch.float64).reshape(n, d) / (n * d)
    y = torch.arange(n) % C
    p = torch.full((n,), 1.0 / n, dtype=torch.float64)
    return X, y, p


SAMPLE_FAULTS = ["X_nonfinite", "X_shape", "X_int", "p_negative", "p_nonfinite", "p_zero", "p_sum",
                 "y_len", "p_len", "y_high", "y_negative", "y_float", "empty_class", "C_bad",
                 "X_rows0"]


@pytest.mark.parametrize("kind", SAMPLE_FAULTS)
@PROPS
@given(n=st.integers(2, 8), d=st.integers(1, 3),
       C=st.integers(1, 2), i=st.integers(0, 100), v=st.floats(1e-6, 1e6), bad=NONFINITE)
def test_samples_bad_inputs(kind, n, d, C, i, v, bad):
    X, y, p = _good_samples(n, d, C)
    i %= n
    C_arg = C
    names = {"X_nonfinite": ["X"], "X_shape": ["X"], "X_int": ["X"], "X_rows0": ["X"],
             "p_negative": ["p", "masses"], "p_nonfinite": ["p", "masses"], "p_zero": ["p", "masses"],
             "p_sum": ["p", "masses"], "y_len": ["y"], "p_len": ["p"], "y_high": ["y", "labels"],
             "y_negative": ["y", "labels"], "y_float": ["y"], "empty_class": ["num_classes"],
             "C_bad": ["num_classes"]}[kind]
    if kind == "X_nonfinite":
        X[i, 0] = bad
    elif kind == "X_shape":
        X = X.reshape(-1) if i % 2 else X[None]
    elif kind == "X_int":
        X = X.long()
    elif kind == "X_rows0":
        X, y, p = X[:0], y[:0], p[:0]
    elif kind == "p_negative":
        p[i] = -v
    elif kind == "p_nonfinite":
        p[i] = bad
    elif kind == "p_zero":
        p = torch.zeros_like(p)
    elif kind == "p_sum":
        p = p * (1.01 + v) if i % 2 else p / (1.01 + v)  # well outside the sum tolerance
    elif kind == "y_len":
        y = torch.cat([y, y[:1]]) if i % 2 else y[:-1]
    elif kind == "p_len":
        p = torch.cat([p, p[:1]]) if i % 2 else p[:-1]
    elif kind == "y_high":
        y[i] = C + int(v) % 5
    elif kind == "y_negative":
        y[i] = -1 - int(v) % 5
    elif kind == "y_float":
        y = y.double()
    elif kind == "empty_class":
        C_arg = C + 1 + i % 3
    elif kind == "C_bad":
        C_arg = [0, -1, 1.5, -(10 ** 30)][i % 4]
    expect_bad(f"Samples:{kind}", lambda: Samples(X, y, p, C_arg), names)


@pytest.mark.parametrize("kind", ["negative", "nonfinite", "zero", "len", "labels"])
@PROPS
@given(n=st.integers(2, 6),
       i=st.integers(0, 100), v=st.floats(1e-6, 1e6), bad=NONFINITE)
def test_samples_from_masses_bad_inputs(kind, n, i, v, bad):
    X, y, p = _good_samples(n, 2, 2)
    i %= n
    masses = p.tolist()
    if kind == "negative":
        masses[i] = -v
    elif kind == "nonfinite":
        masses[i] = bad
    elif kind == "zero":
        masses = [0.0] * n
    elif kind == "len":
        masses = masses + [v]
    if kind == "labels":
        yy = y.double()
        yy[i] = 0.5
        fn = lambda: Samples.from_masses(X, yy, masses)  # noqa: E731
        names = ["labels"]
    else:
        fn = lambda: Samples.from_masses(X, y, masses)  # noqa: E731
        names = ["masses"]
    expect_bad(f"Samples.from_masses:{kind}", fn, names)


# ----------------------------------------------------------------------------- distributions
NCASES = 34


def _dist_case(draw, idx):
    """(name, params, names the message may use, whether to sample) for one bad parameter."""
    neg, nonfin = draw(NEGATIVE), draw(NONFINITE)
    badnum = draw(st.sampled_from([neg, nonfin, 0.0]))
    bad01 = draw(st.sampled_from([nonfin, -1e-3 - abs(neg), 1.0 + 1e-3 + abs(neg)]))
    cases = [
        ("three_atoms", {"p1": draw(st.sampled_from([neg, nonfin]))}, ["p1"]),
        ("three_atoms", {"p3": draw(st.sampled_from([neg, nonfin]))}, ["p3"]),
        ("three_atoms", {"p2": draw(st.sampled_from([neg, nonfin, 0.0]))}, ["p2"]),
        ("three_atoms", {"p1": 0.0, "p3": 0.0}, ["p1", "p3"]),
        ("circles", {"r_outer": badnum}, ["r_outer"]),
        ("circles", {"r_inner": badnum}, ["r_inner"]),
        ("circles", {"r_inner": 2.0, "r_outer": 1.0}, ["r_inner", "r_outer"]),
        ("circles", {"noise": draw(st.sampled_from([neg, nonfin]))}, ["noise"]),
        ("moons", {"noise": draw(st.sampled_from([neg, nonfin]))}, ["noise"]),
        ("moons", {"class_masses": (neg, 1.0)}, ["class_masses", "class masses"]),
        ("moons", {"class_masses": (nonfin, 1.0)}, ["class_masses", "class masses"]),
        ("enclosure", {"t": bad01}, ["t"]),
        ("enclosure", {"r0": badnum}, ["r0"]),
        ("enclosure", {"r_out": draw(st.sampled_from([neg, nonfin, 0.5]))}, ["r_out"]),
        ("xor", {"gap": bad01}, ["gap"]),
        ("line_classes", {"points": draw(st.sampled_from([0, -3, 2.5, nonfin]))}, ["points"]),
        ("line_classes", {"spacing": badnum}, ["spacing"]),
        ("gaussian_mixture", {"means": [[0.0], [nonfin]]}, ["means"]),
        ("gaussian_mixture", {"means": [[0.0], [1.0]], "stds": badnum}, ["stds"]),
        ("gaussian_mixture", {"means": [[0.0], [1.0]], "weights": [neg, 1.0]}, ["weights"]),
        ("gaussian_mixture", {"means": [[0.0], [1.0]], "labels": [0, -1]}, ["labels"]),
        ("interval", {"a": nonfin, "b": 1.0}, ["a"]),
        ("interval", {"a": 1.0, "b": draw(st.sampled_from([1.0, 0.0, neg]))}, ["a", "b"]),
        ("box", {"low": [0.0, nonfin], "high": [1.0, 1.0]}, ["low"]),
        ("box", {"low": [0.0, 0.0], "high": [1.0, neg]}, ["low", "high"]),
        ("ball", {"radius": badnum}, ["radius"]),
        ("ball", {"center": [nonfin, 0.0]}, ["center"]),
        ("sphere", {"radius": badnum}, ["radius"]),
        ("annulus", {"r_in": draw(st.sampled_from([neg, nonfin]))}, ["r_in"]),
        ("annulus", {"r_in": 1.0, "r_out": draw(st.sampled_from([0.5, 1.0, neg, nonfin]))}, ["r_out", "r_in"]),
        ("point_masses", {"X": [[0.0], [nonfin]], "y": [0, 1]}, ["X"]),
        ("point_masses", {"X": [[0.0], [1.0]], "y": [0, 1], "p": [neg, 1.0]}, ["p", "masses"]),
        ("point_masses", {"X": [[0.0], [1.0]], "y": [0, 1], "p": [0.0, 0.0]}, ["p", "masses"]),
        ("point_masses", {"X": [[0.0], [1.0]], "y": [0, 1, 1]}, ["y", "X", "lengths"]),
    ]
    assert len(cases) == NCASES
    return cases[idx]


@pytest.mark.parametrize("idx", range(NCASES))
@PROPS
@given(data=st.data())
def test_distribution_bad_parameters(idx, data):
    name, params, names = data.draw(st.composite(_dist_case)(idx))

    def build_and_sample():
        return get_distribution(name, **params).sample(16)
    expect_bad(f"get_distribution:{name}", build_and_sample, names)


@settings(PROPS, max_examples=30)
@given(name=st.text(st.characters(codec="ascii", categories=["L", "N", "P", "S"],
                                  exclude_characters=":"), min_size=0, max_size=12))
def test_unknown_distribution_names(name):
    if name in list_distributions():
        return
    expect_bad("get_distribution:unknown", lambda: get_distribution(name), ["distribution"])


@settings(PROPS, max_examples=30)
@given(name=st.sampled_from(["three_atoms", "moons", "circles", "ball", "xor", "enclosure"]),
       what=st.sampled_from(["n", "seed", "dtype", "param"]),
       bad=st.sampled_from([0, -1, -(10 ** 30), 2.5, math.nan, math.inf, "abc", None]))
def test_distribution_bad_sample_arguments(name, what, bad):
    dist = get_distribution(name)
    if what == "n":
        if bad is None:
            return  # None is the default size
        fn, names = (lambda: dist.sample(bad)), ["n"]
    elif what == "seed":
        if isinstance(bad, int) and not isinstance(bad, bool) and bad >= 0:
            return  # 0 is a seed; a big negative int wraps modulo 2**63 by design
        if isinstance(bad, int):
            return
        fn, names = (lambda: dist.sample(8, seed=bad)), ["seed"]
    elif what == "dtype":
        fn, names = (lambda: dist.sample(8, dtype=bad if bad is not None else torch.int64)), ["dtype"]
    else:
        fn, names = (lambda: get_distribution(name, no_such_param=bad)), ["no_such_param"]
    expect_bad(f"Distribution.sample:{what}", fn, names)


# ----------------------------------------------------------------------------- Particles
@pytest.mark.parametrize("kind", ["a_len", "w_len", "b_len", "a_nan", "w_nan", "b_nan", "w_1d", "act"])
@PROPS
@given(m=st.integers(1, 5), d=st.integers(1, 3), bad=NONFINITE, i=st.integers(0, 100))
def test_particles_from_tensors_bad(kind, m, d, bad, i):
    a, w, b = torch.randn(m), torch.randn(m, d), torch.randn(m)
    i %= m
    names = {"a_len": ["a", "w", "b"], "w_len": ["a", "w", "b"], "b_len": ["a", "w", "b"],
             "a_nan": ["a"], "w_nan": ["w"], "b_nan": ["b"], "w_1d": ["w"],
             "act": ["activation"]}[kind]
    act = "relu"
    if kind == "a_len":
        a = torch.randn(m + 1)
    elif kind == "w_len":
        w = torch.randn(m + 1, d)
    elif kind == "b_len":
        b = torch.randn(m + 2)
    elif kind == "a_nan":
        a[i] = bad
    elif kind == "w_nan":
        w[i, 0] = bad
    elif kind == "b_nan":
        b[i] = bad
    elif kind == "w_1d":
        w = w[:, 0]
    elif kind == "act":
        act = "no_such_activation_" + str(i)
    expect_bad(f"Particles.from_tensors:{kind}", lambda: Particles.from_tensors(a, w, b, activation=act),
               names)


@pytest.mark.parametrize("arg", ["m", "d", "k", "batch", "scale_a", "scale_w", "scale_b"])
@PROPS
@given(bad=st.sampled_from([0, -1, -(10 ** 30), 2.5, math.nan, math.inf, -math.inf, "3x"]))
def test_particles_gaussian_bad(arg, bad):
    kw = dict(m=4, d=2, k=1, batch=1)
    if arg.startswith("scale") and (isinstance(bad, int) or bad == 2.5):
        return  # any finite scale (negative too: a sign flip) is a valid scale
    kw[arg] = bad
    expect_bad(f"Particles.gaussian:{arg}", lambda: Particles.gaussian(**kw), [arg])


# ----------------------------------------------------------------------------- FlowConfig / TrainConfig
FLOW_POSITIVE = ["dt", "t_end", "ds", "dt_max"]
FLOW_NONNEG = ["lam", "lam_a", "lam_w", "tau", "t0"]
FLOW_NAMES = ["loss", "integrator", "backend", "stepping"]


@pytest.mark.parametrize("field", FLOW_POSITIVE + FLOW_NONNEG + FLOW_NAMES + ["max_steps"])
@PROPS
@given(neg=NEGATIVE, nonfin=NONFINITE, junk=st.text(min_size=0, max_size=8), pick=st.integers(0, 9))
def test_flowconfig_bad(field, neg, nonfin, junk, pick):
    if field in FLOW_NAMES:
        bad = ["no_such_" + junk, "", None, 3][pick % 4]
    elif field == "max_steps":
        bad = [0, -1, -(10 ** 30), 2.5, math.nan, math.inf, "10", None][pick % 8]
    elif field in FLOW_POSITIVE:
        bad = [neg, nonfin, 0.0, "1.0", (1.0,) if field != "dt" else None][pick % 5]
        if field == "dt_max" and bad is None:
            bad = neg
    else:
        bad = [neg, nonfin, "0.1", None if field not in ("lam_a", "lam_w") else neg][pick % 4]
        if field == "t0" and bad is None:
            bad = nonfin
    expect_bad(f"FlowConfig:{field}", lambda: FlowConfig(**{field: bad}), [field])


TRAIN_POSITIVE = ["lr"]
TRAIN_NONNEG = ["momentum", "weight_decay", "gamma", "loss_scale", "tol_grad"]
TRAIN_INTS = ["epochs", "batch_size", "log_every", "eval_batch", "seed"]
TRAIN_NAMES = ["optimizer", "loss", "schedule"]


@pytest.mark.parametrize("field", TRAIN_POSITIVE + TRAIN_NONNEG + TRAIN_INTS + TRAIN_NAMES)
@PROPS
@given(neg=NEGATIVE, nonfin=NONFINITE, pick=st.integers(0, 9))
def test_trainconfig_bad(field, neg, nonfin, pick):
    if field in TRAIN_NAMES:
        bad = ["no_such", "", None, 3][pick % 4]
    elif field in TRAIN_INTS:
        bad = [-1, -(10 ** 30), 2.5, math.nan, math.inf, "10"][pick % 6]
        if field == "seed":
            bad = [10 ** 30, -(10 ** 30), 2.5, math.nan, math.inf, "10"][pick % 6]
        if field in ("batch_size", "log_every", "eval_batch"):
            bad = [0, -1, 2.5, math.nan, math.inf, "10"][pick % 6]
    elif field == "lr":
        bad = [neg, nonfin, 0.0, "0.1", None][pick % 5]
    else:
        bad = [neg, nonfin, "0.1"][pick % 3]
    expect_bad(f"TrainConfig:{field}", lambda: TrainConfig(**{field: bad}), [field])


# ----------------------------------------------------------------------------- neural_collapse
@pytest.mark.parametrize("kind", ["H_nan", "H_shape", "y_len", "y_high", "y_negative", "y_float",
                                  "one_class", "w_negative", "w_nan", "w_len", "w_zero", "W_shape",
                                  "empty_class"])
@PROPS
@given(n=st.integers(4, 10), p=st.integers(2, 4), bad=NONFINITE, i=st.integers(0, 100),
       v=st.floats(1e-6, 1e3))
def test_neural_collapse_bad(kind, n, p, bad, i, v):
    g = torch.Generator().manual_seed(i)
    H = torch.randn(n, p, generator=g, dtype=torch.float64)
    y = torch.arange(n) % 2
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    kw = {}
    i %= n
    names = {"H_nan": ["features"], "H_shape": ["features"], "y_len": ["labels"],
             "y_high": ["labels", "num_classes"], "y_negative": ["labels"], "y_float": ["labels"],
             "one_class": ["labels", "num_classes"], "w_negative": ["weights"], "w_nan": ["weights"],
             "w_len": ["weights"], "w_zero": ["weights"], "W_shape": ["classifier"],
             "empty_class": ["num_classes"]}[kind]
    if kind == "H_nan":
        H[i, 0] = bad
    elif kind == "H_shape":
        H = H[:, 0] if i % 2 else H[None]
    elif kind == "y_len":
        y = y[:-1]
    elif kind == "y_high":
        y[i] = 2
        kw["num_classes"] = 2
    elif kind == "y_negative":
        y[i] = -1
    elif kind == "y_float":
        y = y.double()
        y[i] = 0.5
    elif kind == "one_class":
        y = torch.zeros(n, dtype=torch.long)
    elif kind == "w_negative":
        w[i] = -v
    elif kind == "w_nan":
        w[i] = bad
    elif kind == "w_len":
        w = w[:-1]
    elif kind == "w_zero":
        w = torch.zeros_like(w)
    elif kind == "W_shape":
        kw["classifier"] = torch.randn(3, p + 1, dtype=torch.float64)
    elif kind == "empty_class":
        kw["num_classes"] = 3 + i % 3
    expect_bad(f"neural_collapse:{kind}", lambda: neural_collapse(H, y, weights=w, **kw), names)


# ----------------------------------------------------------------------------- loaders
@pytest.mark.parametrize("how", ["random", "truncated", "trailing", "huge"])
@PROPS
@given(raw=st.binary(min_size=0, max_size=64), gz=st.booleans(),
       dims=st.lists(st.integers(1, 5), min_size=1, max_size=3))
def test_read_idx_bad_files(tmp_path_factory, raw, gz, how, dims):
    tmp = tmp_path_factory.mktemp("idx")
    head = struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    body = bytes(math.prod(dims))
    if how == "random":
        data = raw
        if len(raw) >= 4 and raw[:2] == b"\0\0":
            return  # could be a genuine idx file by chance
    elif how == "truncated":
        data = (head + body)[: max(0, len(head) + len(body) - 1 - len(raw) % (len(head) + len(body)))]
    elif how == "trailing":
        data = head + body + (raw or b"x")
    else:
        data = struct.pack(">HBB", 0, 0x0E, 3) + struct.pack(">3I", 2 ** 31, 2 ** 31, 9) + raw
    path = tmp / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    if gz and how == "truncated" and data:
        path.write_bytes(gzip.compress(data)[:-3])  # a cut gzip stream as well
    expect_bad(f"read_idx:{how}", lambda: read_idx(path), [path.name, str(path)])
    expect_bad(f"mnist:{how}", lambda: mnist(tmp), [path.name, str(path), "labels"])


def _pickled_batches(raw):
    rng = np.random.default_rng(len(raw))
    good = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
    return {
        "random": raw,
        "truncated": pickle.dumps(good, protocol=2)[: max(1, len(raw) % 200)],
        "list": pickle.dumps([1, 2, 3], protocol=2),
        "no_labels": pickle.dumps({b"data": good[b"data"]}, protocol=2),
        "str_labels": pickle.dumps({**good, b"labels": ["a", "b", "c", "d"]}, protocol=2),
        "ragged_labels": pickle.dumps({**good, b"labels": [[0], [1, 2], 3, 4]}, protocol=2),
        "short_data": pickle.dumps({**good, b"data": good[b"data"][:, :100]}, protocol=2),
        "float_data": pickle.dumps({**good, b"data": np.full((4, 3072), np.nan)}, protocol=2),
        "neg_labels": pickle.dumps({**good, b"labels": [0, -1, 2, 3]}, protocol=2),
        "huge_labels": pickle.dumps({**good, b"labels": [0, 10 ** 30, 2, 3]}, protocol=2),
        "dict_data": pickle.dumps({**good, b"data": {1: 2}}, protocol=2),
    }


@pytest.mark.parametrize("kind", ["random", "truncated", "list", "no_labels", "str_labels",
                                  "ragged_labels", "short_data", "float_data", "neg_labels",
                                  "huge_labels", "dict_data"])
@PROPS
@given(raw=st.binary(min_size=0, max_size=256))
def test_cifar_bad_batches(tmp_path_factory, raw, kind):
    tmp = tmp_path_factory.mktemp("cifar")
    path = tmp / "data_batch_1"
    path.write_bytes(_pickled_batches(raw)[kind])
    names = [path.name, str(path)]
    if kind not in ("neg_labels", "float_data"):
        expect_bad(f"read_cifar_batch:{kind}", lambda: read_cifar_batch(path), names)
    expect_bad(f"cifar10:{kind}", lambda: cifar10(tmp).sample(4), names + ["labels"])


# ----------------------------------------------------------------------------- --set
_CFG = None


def _three_atoms_cfg():
    global _CFG
    if _CFG is None:
        _CFG = get_experiment("three_atoms").config()
    return _CFG


FLOAT_KEYS = ["q1", "q2", "q3", "scale_a", "data.p1", "data.p3", "flow.dt", "flow.ds", "flow.t_end",
              "flow.lam", "flow.tau"]
INT_KEYS = ["m", "flow.max_steps", "flow.divergence.window"]
KEY_TEXT = st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), min_size=0, max_size=10)


@pytest.mark.parametrize("kind", ["float_nan", "float_text", "float_empty", "int_huge", "int_text",
                                  "int_float", "unknown_key", "bad_key", "deep_key", "flow_inf",
                                  "name_junk"])
@PROPS
@given(fkey=st.sampled_from(FLOAT_KEYS), ikey=st.sampled_from(INT_KEYS), text=KEY_TEXT,
       pick=st.integers(0, 99))
def test_set_overrides_bad(kind, fkey, ikey, text, pick):
    cfg = _three_atoms_cfg()
    if kind == "float_nan":
        key, val = fkey, ["nan", "NaN", " -nan ", "+NAN"][pick % 4]  # text: a NaN object is the API's
    elif kind == "float_text":
        key, val = fkey, ["`rm -rf /`", "\u00e9\u00e8", "1.0.0", "0x1p", text + "`", "1e2e3"][pick % 6]
        try:
            float(val)
            return
        except ValueError:
            pass
    elif kind == "float_empty":
        key, val = fkey, ["", "  ", "\t"][pick % 3]
    elif kind == "int_huge":
        key, val = ikey, [10 ** 30, str(10 ** 30), "1e30", "-1e300", "1e999", str(-(10 ** 19))][pick % 6]
    elif kind == "int_text":
        key, val = ikey, ["", "`1`", "nan", "inf", "\u0661\u0662x", text + "!"][pick % 6]
    elif kind == "int_float":
        key, val = ikey, ["2.5", 2.5, "1e-3"][pick % 3]
    elif kind == "unknown_key":
        key, val = ["nope", "flow.nope", "data.nope", "flow.divergence.nope", "q\u00e9",
                    "flow.dt.x", "m.x"][pick % 7], "1"
    elif kind == "bad_key":
        key, val = ["", ".", "flow.", ".dt", "fl ow", "`m`", "m=1", text + "`", "flow..dt"][pick % 9], "1"
    elif kind == "deep_key":
        key, val = ["data.p1.x", "flow.divergence.window.y", "q1.z"][pick % 3], "1"
    elif kind == "flow_inf":
        key, val = ["flow.dt", "flow.t_end", "flow.lam", "flow.ds"][pick % 4], ["inf", "-inf", "-1"][pick % 3]
    else:  # name_junk
        key = ["flow.loss", "flow.integrator", "flow.backend", "flow.stepping", "data"][pick % 5]
        val = ["", "`x`", "\u00e9", "no_such", text + "`"][pick % 5]
    expect_bad(f"apply_overrides:{kind}", lambda: apply_overrides(cfg, {key: val}),
               [key] if key else ["''", "parameter name"])


# ----------------------------------------------------------------------------- CLI
def _cli(argv, capsys):
    TRIED["cli"] += 1
    code = meanfield.cli.main(argv)
    out, err = capsys.readouterr()
    return code, err


CLI_CASES = [
    (["run", "three_atoms", "--seed", str(10 ** 30)], "seed"),
    (["run", "three_atoms", "--seed", "-1"], "seed"),
    (["run", "three_atoms", "--seed", "nan"], "seed"),
    (["run", "three_atoms", "--device", "foo"], "device"),
    (["run", "three_atoms", "--device", "cuda:99"], "device"),
    (["run", "three_atoms", "--backend", "nope"], "backend"),
    (["run", "no_such_experiment"], "no_such_experiment"),
    (["sweep", "no_such_experiment", "--grid", "q1=1,2"], "no_such_experiment"),
    (["run", "three_atoms", "--set", "q1=nan"], "q1"),
    (["run", "three_atoms", "--set", "m=" + str(10 ** 30)], "m"),
    (["run", "three_atoms", "--set", "flow.nope=1"], "flow.nope"),
    (["run", "three_atoms", "--set", "noequals"], "noequals"),
    (["run", "three_atoms", "--checkpoint-every", "nan"], "checkpoint"),
    (["sweep", "three_atoms", "--grid", "q1=nan,1"], "q1"),
    (["sweep", "three_atoms", "--grid", "q1="], "q1"),
    (["sweep", "three_atoms", "--grid", "q1=1,2", "--seeds", "0"], "seeds"),
    (["sweep", "three_atoms", "--grid", "q1=1,2", "--batch-size", "0"], "batch"),
    (["sweep", "three_atoms", "--grid", "q1=1,2", "--seed", "-5"], "seed"),
    (["plot", "/nonexistent/dir/\u00e9"], "nonexistent"),
]


@pytest.mark.parametrize("argv,name", CLI_CASES, ids=[" ".join(a)[:40] for a, _ in CLI_CASES])
def test_cli_bad_arguments(argv, name, capsys, tmp_path):
    code, err = _cli(argv + ["--out", str(tmp_path / "out")] if argv[0] != "plot" else argv, capsys)
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert name.lower() in lines[0].lower(), lines[0]
    assert not (tmp_path / "out" / "summary.json").exists()


def test_cli_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    for argv in (["run", "three_atoms", "--out", str(f)], ["run", "three_atoms", "--out", str(f / "sub")],
                 ["sweep", "three_atoms", "--grid", "q1=1,2", "--out", str(f)]):
        code, err = _cli(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "afile" in err, err
    assert f.read_text() == "x"


# ----------------------------------------------------------------------------- the count
def test_zz_count_of_bad_inputs():
    """Runs last (file order): how many bad inputs this file tried."""
    total = sum(TRIED.values())
    print(f"\n[test_faults_props] {total} bad inputs tried in {len(TRIED)} families:")
    for k, v in sorted(TRIED.items()):
        print(f"  {k}: {v}")
    if len(TRIED) > 1:  # the whole file ran (not a single selected test)
        assert total >= 300
