"""The mean-field three-layer network of Wu & Mondelli (docs/science.md §6.4).

A measure of m particles with outputs in R^p (the feature map h_rho, run by the scalar engine's
backends with k = p) followed by a trained linear head W in R^{K x p}; MSE with L2 regularisation
of both; the measure follows the Wasserstein gradient flow and W the Euclidean one on the same
clock. :mod:`.network` holds the model, :mod:`.flow` the objective, velocities, gradient norms
and the loop, :mod:`.collapse` NC1 of h and its bound by the loss and the gradient norm.
"""

from .collapse import class_stats, feature_energy, nc1_bound, nc1_record
from .flow import (VectorFlowConfig, VectorFlowResult, forward, grad_norms, objective, prepare,
                   simulate_vector, velocity)
from .network import HeadedNetwork

__all__ = ["HeadedNetwork", "VectorFlowConfig", "VectorFlowResult", "prepare", "forward",
           "objective", "velocity", "grad_norms", "simulate_vector", "class_stats",
           "feature_energy", "nc1_bound", "nc1_record"]
