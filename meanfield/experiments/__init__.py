"""Registered experiments (one module per scientific question) and the run-directory writer."""

from .registry import (Experiment, ExperimentResult, RunContext, agreement, get_experiment,
                       list_experiments, register_experiment, resolve_config, run_experiment)

__all__ = ["Experiment", "ExperimentResult", "RunContext", "agreement", "get_experiment",
           "list_experiments", "register_experiment", "resolve_config", "run_experiment"]
