"""The shared UFM result type and the modules split out of loss_family, fixed_etf and cli.

Oracles: the fields of the result types before the clean-up (names and order, written out here),
the subcommands of the argument tree (every one but bench needs a handler), and identity of the
names the old modules exported with the objects of the new ones. The summaries themselves are
pinned by tests/test_fixtures.py and checked by tests/test_loss_family.py, tests/test_cli.py.
"""

import argparse
import dataclasses

import pytest
import torch

from meanfield.deep.ufm import FeatureFit, MinimiseResult, minimise
from meanfield.deep.ufm_imbalanced import ImbalancedFit, fit_imbalanced_ufm, fit_lpm
from meanfield.deep.ufm_sphere import SphereUFMConfig, SphereUFMResult, fit_sphere_ufm

BASE = ["W", "H", "labels", "value", "grad_norm", "iterations", "converged"]


def _names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_result_types_keep_their_fields_in_order():
    assert _names(FeatureFit) == BASE
    assert _names(ImbalancedFit) == BASE
    assert _names(SphereUFMResult) == BASE + ["config", "trace"]
    assert issubclass(ImbalancedFit, FeatureFit) and issubclass(SphereUFMResult, FeatureFit)


def test_from_minimise_copies_the_optimiser_outcome():
    W, H, y = torch.ones(2, 3), torch.zeros(3, 4), torch.tensor([0, 0, 1, 1])
    r = MinimiseResult(0.5, 1e-3, 7, False)
    f = ImbalancedFit.from_minimise(W, H, y, r)
    assert type(f) is ImbalancedFit
    assert (f.value, f.grad_norm, f.iterations, f.converged) == (0.5, 1e-3, 7, False)
    assert f.W is W and f.H is H and f.labels is y
    s = SphereUFMResult.from_minimise(W, H, y, r, config=SphereUFMConfig())
    assert s.trace == () and s.config == SphereUFMConfig()
    with pytest.raises(TypeError):  # a subclass's required field cannot be left out
        SphereUFMResult.from_minimise(W, H, y, r)


def test_fits_fill_the_shared_fields():
    """The three fitting functions: the objective recomputed from W, H is the stated value."""
    counts = [3, 1, 1]
    f = fit_imbalanced_ufm(counts, 0.01, 0.01, max_iter=50)
    assert isinstance(f, ImbalancedFit) and f.W.shape == (3, 3) and f.H.shape == (3, 5)
    want = (torch.nn.functional.cross_entropy((f.W @ f.H).T, f.labels) + 0.005 * (f.W ** 2).sum()
            + 0.005 * (f.H ** 2).sum())
    assert abs(float(want) - f.value) <= 1e-12
    g = fit_lpm(counts, 1.0, 1.0, max_iter=50)
    assert abs((g.W ** 2).sum().item() / 3 - 1.0) <= 1e-12  # (1/K) sum_k |w_k|^2 = E_W
    s = fit_sphere_ufm(3, 2, SphereUFMConfig(max_iter=20))
    assert isinstance(s, FeatureFit) and s.iterations == 20 and not s.converged
    assert torch.allclose(s.W.norm(dim=1), torch.ones(3, dtype=s.W.dtype))


def test_minimise_result_is_what_from_minimise_reads():
    x = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    r = minimise(lambda: ((x - 1) ** 2).sum(), [x], method="lbfgs", lr=1.0, tol_grad=1e-10,
                 max_iter=100)
    f = FeatureFit.from_minimise(x.detach(), x.detach(), torch.zeros(1, dtype=torch.long), r)
    assert f.converged and f.value <= 1e-18 and f.iterations == r.iterations


def test_loss_family_names_are_the_split_modules_objects():
    from meanfield.experiments import loss_family as lf
    from meanfield.experiments import loss_family_deep as deep
    from meanfield.experiments import loss_family_plot as fig
    from meanfield.experiments import loss_family_ufm as ufm
    for name in ("etf_optimum", "loss_of_gap", "LOSSES", "SHORT", "PROVED", "CRITERIA"):
        assert getattr(lf, name) is getattr(ufm, name), name
    for name in ("deep_loss_name", "wilson", "paired_interval", "Z95"):
        assert getattr(lf, name) is getattr(deep, name), name
    assert lf.EXPERIMENT.plot is fig.plot and lf.EXPERIMENT.run is lf.run
    assert set(lf.__all__) <= set(dir(lf))


def test_fixed_etf_keeps_its_names_and_rejects_an_unknown_preset():
    from meanfield.experiments import fixed_etf as fe
    from meanfield.experiments.registry import run_experiment
    for name in ("split", "state_saving_theory", "FixedETFConfig", "ResNetPreset", "ARMS", "run",
                 "plot", "EXPERIMENT"):
        assert hasattr(fe, name), name
    with pytest.raises(ValueError, match="unknown preset 'vgg'"):
        run_experiment("fixed_etf", {"preset": "vgg"}, write=False)


def test_every_subcommand_has_a_handler():
    from meanfield import cli, cli_commands
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) - {"bench"} == set(cli_commands.COMMANDS)
    assert cli.parse_sets is cli_commands.parse_sets
    assert cli.parse_sets(["a.b = 1", "c=x=y"]) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        cli.parse_sets(["novalue"])
