"""A plugin: a distribution and an experiment on it (`meanfield --plugin FILE run two_points`)."""
from dataclasses import dataclass

import meanfield
from meanfield.data import PointMasses, register_distribution
from meanfield.study import DataSpec, Experiment, ExperimentResult, Science, agreement


def two_points(gap: float = 1.0, mass: float = 0.5):
    """Class 0 at -gap/2 and class 1 at +gap/2, with masses 1 - mass and mass."""
    return PointMasses([[-gap / 2], [gap / 2]], [0, 1], [1 - mass, mass])


@dataclass(frozen=True)
class TwoPointsConfig:
    """Parameters of the two_points experiment.

    Attributes:
        data: the distribution (any registered one with two classes).
        scale: a factor on the measured distance.
    """

    data: DataSpec = DataSpec("two_points", {"gap": 1.0})
    scale: float = 1.0


def measure(cfg):
    s = cfg.data.build().sample(seed=0)
    dist = cfg.scale * float(s.X[s.y == 1].mean() - s.X[s.y == 0].mean())
    summary = {}
    agreement(summary, "distance", dist, cfg.data.kwargs.get("gap", 1.0), 1e-9)
    return ExperimentResult(summary, [{"t": 0.0, "distance": dist}])


register_distribution("two_points", two_points, overwrite=True)
meanfield.register_experiment(Experiment(  # run_batch: sweeps run several configurations at once
    "two_points", "distance between the classes of a two-point law", TwoPointsConfig,
    run_batch=lambda cfgs, seeds, ctx: [measure(c) for c in cfgs], batch_keys=("data", "scale"),
    science=Science(claim="the class means are gap apart")), overwrite=True)
