"""Backends: the two interaction reductions of a mean-field step, and nothing else.

A backend computes, for a batch of B independent systems of m neurons and n samples,

.. math::

    f_{bj} = \\frac1m \\sum_i a_{bi}\\, \\sigma(w_{bi}\\cdot x_{bj} + b_{bi})            \\quad\\text{(outputs)}

    v^a_{bi} = -\\sum_j g_{bj}\\, \\sigma(z_{bij}),\\quad
    v^w_{bi} = -\\sum_j (a_{bi}\\cdot g_{bj})\\, \\sigma'(z_{bij})\\, x_{bj},\\quad
    v^b_{bi} = -\\sum_j (a_{bi}\\cdot g_{bj})\\, \\sigma'(z_{bij})          \\quad\\text{(velocities)}

with ``g = p * dl/df``. Weight decay, noise and time stepping live in :mod:`meanfield.flow`.
Names: ``dense`` (chunked torch), ``keops`` (pykeops), ``numba`` (fused CPU kernels), ``auto``.
"""

from .base import Backend, get_backend, list_backends, register_backend, resolve_backend

__all__ = ["Backend", "get_backend", "list_backends", "register_backend", "resolve_backend"]
