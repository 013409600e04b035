"""Closed-form oracles shared by the tests, each with its tolerance and why."""

import math

# Three-atom law (docs/science.md §3.2): f(1) - f(-1) -> log(q3 p3 / (2 q1 p1)).
# Tolerance 1e-2 absolute (the bound): the transient decays like 1/t and log-time Heun
# has error O(ds^2); measured errors at t_end = 1e6, ds = 0.01 are ~1e-5.
THREE_ATOM_CASES = [
    # (p1, p2, p3, q1, q2, q3)
    (1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    (1.0, 2.0, 2.0, 1.0, 1.0, 1.0),   # p3 = 2 p1: the class collapses (gap -> 0)
    (0.2, 0.5, 0.3, 1.0, 1.0, 1.0),
    (1.0, 1.0, 3.0, 1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0, 1.0, 2.0, 3.0),   # unequal particle fractions
    (2.0, 1.0, 1.0, 3.0, 1.0, 1.0),
]
THREE_ATOM_TOL = 1e-2


def three_atom_gap(p1, p3, q1=1.0, q3=1.0):
    return math.log(q3 * p3 / (2 * q1 * p1))


def activation_cases(kernel=None):
    """Built-in activation names from the registry, those with a ``kernel`` ("keops", "numba") if given.

    Backend tests take their activations from here, so a new built-in is tested everywhere it runs.
    """
    from meanfield.activations import ACTIVATIONS
    return [name for name, act in ACTIVATIONS.items()
            if act.builtin and (kernel is None or getattr(act, kernel) is not None)]


def collapsed_features(M, reps=3):
    """Features at the columns of M (p, C), every class ``reps`` times: (H (C reps, p), labels)."""
    import torch
    C = M.shape[1]
    y = torch.arange(C).repeat(reps)
    return M.T[y], y


def random_nc_problem(n=40, p=6, C=4, seed=0):
    """A random NC problem in float64: features H (n, p) around class centres, labels y, a
    classifier W (C, p), sample weights w (n,) and 7 out-of-distribution features O (7, p)."""
    import torch
    f64 = torch.float64
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    H = torch.randn(n, p, generator=g, dtype=f64) + 2 * torch.randn(C, p, generator=g, dtype=f64)[y]
    W = torch.randn(C, p, generator=g, dtype=f64)
    w = torch.rand(n, generator=g, dtype=f64) + 0.1
    O = torch.randn(7, p, generator=g, dtype=f64) + 1.0
    return H, y, W, w, O
