"""meanfield: mean-field and finite-width simulations of neural collapse.

The public surface is small; everything else lives in the submodules named in the README.
"""

from .activations import get_activation, list_activations, register_activation
from .data import Distribution, Samples
from .flow import DivergenceError, FlowConfig, FlowResult, risk, simulate, velocity
from .losses import get_loss, list_losses
from .metrics import NCMetrics, neural_collapse, output_collapse, particle_neural_collapse
from .particles import Particles
from .record import Recorder
from .load import load
from .study.experiment import register_experiment, unregister_experiment
from .study.plugins import load_entry_points, load_plugins

__version__ = "0.1.0"

__all__ = [
    "Particles", "Samples", "Distribution", "FlowConfig", "FlowResult", "DivergenceError",
    "simulate", "velocity", "risk", "Recorder", "get_activation", "list_activations",
    "register_activation", "get_loss", "list_losses", "NCMetrics", "neural_collapse",
    "particle_neural_collapse", "output_collapse", "load", "register_experiment",
    "unregister_experiment", "load_plugins", "load_entry_points", "__version__",
]
