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
