"""Compatibility names for experiment modules: everything lives in :mod:`meanfield.study`."""

from ..study.experiment import (EXPERIMENTS, Experiment, ExperimentResult, RunContext, Science,
                                Theory, agreement, flow_for, get_experiment, list_experiments, parse_dtype,
                                register_experiment, resolve_config, unregister_experiment)
from ..study.rundir import default_out, run_experiment
from ..study.spec import DataSpec, ModelSpec

__all__ = ["EXPERIMENTS", "Experiment", "ExperimentResult", "RunContext", "Science", "Theory",
           "agreement", "flow_for", "get_experiment", "list_experiments", "parse_dtype", "register_experiment",
           "unregister_experiment", "resolve_config", "default_out", "run_experiment", "DataSpec",
           "ModelSpec"]
