"""The built-in atlas entries: each one declaration of what to sweep.

The statistic, threshold, theory line and axis labels of every panel come from its experiment's
``science`` (see :mod:`meanfield.atlas.entry`); here only grids, fixed parameters and seeds are
chosen per size.
"""

from __future__ import annotations

from .entry import SIZES, AtlasEntry, Panel, sizes

__all__ = ["BUILTIN"]

# ---------------------------------------------------------------- three atoms
# default: 12 x 6 points x 3 seeds (the resolution rule of every default-size panel)
_P3 = sizes("0.25,4", "0.25:8:12:log", "0.125:16:24:log")
_P2 = sizes("1", "0.25:4:6:log", "0.25:4:9:log")
_THREE_GRID = {k: {"data.p3": _P3[k], "data.p2": _P2[k]} for k in SIZES}

THREE_ATOMS = AtlasEntry(
    "three_atoms", "Three atoms −1, 0, 1 (class {−1, 1} vs {0}), exponential loss, λ = 0",
    "unbounded regime (exponential loss, no weight decay): the absolute within-class spread "
    "|f(1) − f(−1)| of class {−1, 1} at the final time; collapsed when below 0.05",
    "the dashed line p₃ = 2p₁ is the theorem for frozen flat features (docs/science.md §3.2); on "
    "the trainable-ReLU panel it is drawn as a reference only (no theory is claimed there)",
    (Panel("frozen", "three_atoms", "frozen smoothstep features", "data.p3", "data.p2",
           _THREE_GRID, sizes({"m": 60, "flow.t_end": 1e4}, {}, {"m": 3000}), logx=True),
     Panel("relu", "three_atoms_relu", "trainable ReLU, λ = 0", "data.p3", "data.p2", _THREE_GRID,
           sizes({"m": 50, "flow.t_end": 100.0, "flow.ds": 0.01, "snapshot": 1},
                 {"m": 100, "flow.t_end": 1e4, "flow.ds": 0.01, "snapshot": 1},
                 {"m": 1000, "flow.t_end": 1e6, "snapshot": 1}),
           theory="reference:three_atoms", logx=True)),
    sizes(1, 3, 4))

# ---------------------------------------------------------------- enclosure
_T = sizes("0,1", "0:1:12", "0:1:21")
_LAM = sizes("0.001,0.1", "1e-3:1e-1:6:log", "1e-4:1:13:log")
_ENC_GRID = {k: {"data.t": _T[k], "flow.lam": _LAM[k]} for k in SIZES}
_ENC_MF = sizes({"model.m": 100, "n": 60, "flow.t_end": 10.0, "flow.dt": 0.1}, {}, {})
# finite nets: width 64 (the models' own default is 128). Default 600 epochs: at 27 checked points
# (t = 0, 0.45, 0.9 x lambda = 1e-3, 1e-2, 1e-1 x two_layer, deep3, deep5; seed 0) the collapsed
# verdict (NC1 < 0.05) is the same at 300, 500 and 1000 epochs (collapsed values move < 0.1 decade
# from 500 to 1000; still falling near the threshold: two_layer t = 0.45, lambda = 1e-3, 0.083 -> 0.053).
# 1000 epochs put the entry at ~28 CPU-minutes, over its budget; 600: ~22 (measured, loaded CPU)
_ENC_NET = sizes({"model.width": 16, "n": 60, "train.epochs": 150},
                 {"model.width": 64, "train.epochs": 600}, {"model.width": 64})


def _enc_panel(key: str, title: str, extra: dict) -> Panel:
    base = _ENC_MF if extra.get("model", "meanfield") == "meanfield" else _ENC_NET
    # NC1 >= 1 is no collapse at all; trivial nets reach ~300 and would wash out the map
    return Panel(key, "enclosure", title, "data.t", "flow.lam", _ENC_GRID,
                 {k: dict(v, **extra) for k, v in base.items()}, logy=True, vmax=1.0)


ENCLOSURE = AtlasEntry(
    "enclosure", "Disc vs cut annulus (Enclosure t) against weight decay, logistic loss",
    "bounded regime (weight decay λ > 0): NC1 of the penultimate features at the end of a fixed "
    "training budget; collapsed when below 0.05 (NC1 of two classes is the within-class variance "
    "along the class-mean axis over the squared half-distance of the means: 0.05 is a within-class "
    "std of about 22 % of it)",
    "the dashed line is a geometric reference computed by LPs from the distribution in use "
    "(meanfield.geometry: the t where a sample of class −1 first enters the convex hull of class +1, "
    "on 2000 samples at the radii set; the closed form (r_in − r0)/(r_in + r_out) is its test "
    "oracle), not a theorem: past it part of class −1 lies in the convex hull of class +1 (the "
    "three-atom configuration in 2-D)",
    (_enc_panel("meanfield", "mean-field two-layer ReLU (m particles, Wasserstein flow)",
                {"model": "meanfield"}),
     _enc_panel("two_layer", "finite two-layer ReLU with biases (Adam)", {"model": "two_layer"}),
     _enc_panel("deep3", "deep homogeneous ReLU, depth 3 (input (x, 1))",
                {"model": "deep", "model.depth": 3}),
     _enc_panel("deep5", "deep homogeneous ReLU, depth 5 (input (x, 1))",
                {"model": "deep", "model.depth": 5})),
    sizes(1, 3, 4))

# Float32 particles: numba's fused kernels with the tanh / softplus approximations (error <= 1e-6).
# In float64 those two run on the dense backend, 5-7x slower: one 24-point unit (t 0..1 x 6 decays,
# seed 0) took 66 s (softplus) and 88 s (tanh) against 12 s in float32, quiet 2-core EPYC. Over
# those 24 points x 4 activations NC1 moved 1-10 % between the dtypes (the flow at t = 100 is not
# at rest); the collapsed verdict agreed at 94 of 96 (the two: smoothstep, NC1 0.043 / 0.047 in
# float64 against 0.052 / 0.053 in float32).
ACTIVATION = AtlasEntry(
    "activation", "Activation against geometry: mean-field two-layer net, logistic loss",
    "bounded regime (λ > 0): NC1 of the penultimate (hidden) features of the mean-field net "
    "(float32 particles); collapsed when below 0.05",
    "the dashed line is the geometric reference (class −1 enters the hull of class +1), computed "
    "by LPs from the distribution in use as on the enclosure panels",
    tuple(_enc_panel(a, f"{a} ({kind})", {"model": "meanfield", "model.activation": a,
                                          "dtype": "float32"})
          for a, kind in (("relu", "homogeneous"), ("softplus", "smooth"), ("tanh", "smooth"),
                          ("smoothstep", "flat outside [0, 1]"))),
    sizes(1, 3, 4))

# ---------------------------------------------------------------- deep nets on digits
DEEP_DIGITS = AtlasEntry(
    "deep_digits", "Deep homogeneous ReLU nets on digits (8×8): NC1 and NC3 against weight decay and depth",
    "bounded regime (MSE with weight decay λ > 0): NC1 of the penultimate features (collapsed "
    "below 0.1) and NC3, the self-duality of the classifier and the centred means (collapsed "
    "below 0.3), after a fixed SGD budget",
    "no closed-form boundary: docs/science.md §3.4 says NC needs λ > 0 at critical points, not "
    "where a finite budget gets; no line is drawn",
    # both panels read one sweep (key "sweep"): the same runs give NC1 and NC3 (two keys ran every
    # net twice: ~50 instead of ~25 CPU-minutes at the default size, measured)
    tuple(Panel("sweep", "deep_collapse", title, "train.weight_decay", "model.depth",
                sizes({"train.weight_decay": "1e-4,1e-2", "model.depth": "2,3"},
                      {"train.weight_decay": "1e-4:1e-2:12:log", "model.depth": "2,3,4,5,6,7"},
                      {"train.weight_decay": "1e-5:3e-2:8:log", "model.depth": "2,3,4,5,6,7"}),
                # 300 epochs: NC1 is still falling at 30 (0.2) and reaches ~0.02 at 600 for small λ
                sizes({"data.per_class": 20, "train.epochs": 3, "model.width": 32},
                      {"train.epochs": 300},
                      {"data": "mnist_subset", "data.per_class": 500, "train.epochs": 600,
                       "model.width": 256}),
                metric=key, threshold=thr, collapsed_below=True, theory=None, logx=True)
          for key, title, thr in (("nc1", "NC1 (variability collapse)", 0.1),
                                  ("nc3", "NC3 (self-duality of W and the means)", 0.3))),
    sizes(1, 3, 3))

# ---------------------------------------------------------------- the UFM
_UFM_GRID = sizes({"lam_w": "0.01,0.5", "lam_h": "0.01,0.5"},
                  {"lam_w": "3e-3:1:12:log", "lam_h": "3e-3:1:12:log"},
                  {"lam_w": "1e-3:1:19:log", "lam_h": "1e-3:1:19:log"})
_UFM_FIX = sizes({"tol_grad": 1e-8, "max_iter": 500}, {"tol_grad": 1e-8, "max_iter": 3000},
                 {"num_classes": 10, "per_class": 20, "tol_grad": 1e-9})
UFM = AtlasEntry(
    "ufm", "Unconstrained features model (cross-entropy, K = 4, n = 3): collapse against (λ_W, λ_H)",
    "bounded regime (weight decays > 0), global optimum by L-BFGS: the classifier norm ‖W‖_F "
    "(collapsed = a nonzero NC optimum, ‖W‖_F above 10⁻³; W = H = 0 below) and the ETF distance "
    "of W, NC2 (collapsed below 10⁻³; undefined where the optimum is W = H = 0)",
    "the dashed line K·√(n λ_W λ_H) = 1 is the theorem (Zhu et al. 2021; docs/science.md §3.5)",
    (Panel("sweep", "ufm_collapse", "‖W‖_F at the optimum", "lam_w", "lam_h", _UFM_GRID, _UFM_FIX,
           logx=True, logy=True),
     Panel("sweep", "ufm_collapse", "NC2: ETF distance of W (grey: W = 0)", "lam_w", "lam_h",
           _UFM_GRID, _UFM_FIX, metric="nc2_etf_w", threshold=1e-3, collapsed_below=True,
           logx=True, logy=True)),
    sizes(1, 3, 3))

# Entries declared in their own modules: ``meanfield/atlas/<module>.py`` with a tuple ``ENTRIES``.
_MODULES: tuple[str, ...] = ("imbalance", "pretrained", "meanfield_nc1", "many_classes", "deep_ufm")


def _from_modules() -> tuple:
    import importlib
    out: list = []
    for m in _MODULES:
        out.extend(importlib.import_module(f"{__package__}.{m}").ENTRIES)
    return tuple(out)


BUILTIN = (THREE_ATOMS, ENCLOSURE, ACTIVATION, DEEP_DIGITS, UFM) + _from_modules()
