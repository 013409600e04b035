"""The study layer: experiments as compositions of engine configs, run directories, plugins.

Sweeps (:mod:`meanfield.sweep`), the atlas (:mod:`meanfield.atlas`) and the report
(:mod:`meanfield.report`) build on this package.
"""

from .experiment import (EXPERIMENTS, Experiment, ExperimentResult, RunContext, Science, Theory,
                         agreement, get_experiment, list_experiments, parse_dtype,
                         register_experiment, resolve_config, unregister_experiment)
from .plugins import load_entry_points, load_plugins
from .rundir import RunFiles, plot_run, run_experiment
from .spec import DataSpec, ModelSpec, apply_overrides, describe

__all__ = ["EXPERIMENTS", "Experiment", "ExperimentResult", "RunContext", "Science", "Theory",
           "agreement", "get_experiment", "list_experiments", "parse_dtype", "register_experiment",
           "unregister_experiment", "resolve_config", "load_plugins", "load_entry_points",
           "RunFiles", "plot_run", "run_experiment", "DataSpec", "ModelSpec", "apply_overrides",
           "describe"]
