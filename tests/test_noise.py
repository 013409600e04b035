"""Langevin noise per system: a system's trajectory never depends on the batch it ran in."""

import pytest
import torch

import meanfield as mf
from meanfield.flow import FlowConfig
from meanfield.noise import SystemNoise, system_seeds
from meanfield.study.batching import stack_particles


def _data():
    X = torch.linspace(-1, 1, 11, dtype=torch.float64)[:, None]
    return mf.Samples(X, (X[:, 0] > 0).long(), torch.full((11,), 1 / 11, dtype=torch.float64), 2)


def _parts(seed):
    return mf.Particles.gaussian(20, 1, seed=seed, dtype=torch.float64)


CFG = FlowConfig(loss="logistic", dt=0.05, t_end=0.5, tau=1e-2, lam=1e-2, backend="dense")


def test_batched_noisy_systems_equal_their_runs_alone():
    """Three systems with tau > 0 stepped together (seeds 5, 6, 7) end exactly where each ends
    alone with its seed; an int seed s gives the systems s, s + 1, ...; system 0 of a batch
    seeded 5 is the run alone with seed 5."""
    data = _data()
    P = stack_particles([_parts(s) for s in (1, 2, 3)])
    batch = mf.simulate(P, data, CFG, seed=[5, 6, 7], progress=False)
    as_int = mf.simulate(P, data, CFG, seed=5, progress=False)
    assert batch.seed == (5, 6, 7) == as_int.seed
    for i, s in enumerate((5, 6, 7)):
        alone = mf.simulate(_parts(i + 1), data, CFG, seed=s, progress=False)
        assert alone.seed == s
        for t in ("a", "w", "b"):
            got = getattr(batch.particles.select(i), t)
            assert torch.equal(got, getattr(alone.particles, t))
            assert torch.equal(got, getattr(as_int.particles.select(i), t))
    # and the noise did act: another seed moves the particles elsewhere
    other = mf.simulate(_parts(1), data, CFG, seed=99, progress=False)
    assert not torch.equal(other.particles.a, batch.particles.select(0).a)


def test_selected_system_continues_as_in_the_batch():
    """result.select(i) carries system i's seed and generator state: continuing it alone gives
    the batch's continuation of that system."""
    data = _data()
    P = stack_particles([_parts(s) for s in (1, 2)])
    half = mf.simulate(P, data, CFG, seed=[3, 4], progress=False)
    cont = FlowConfig(**{**CFG.__dict__, "t_end": 1.0})
    whole = mf.simulate(half, data, cont, progress=False)
    one = mf.simulate(half.select(1), data, cont, progress=False)
    assert half.select(1).seed == 4 and half.rng_state.shape[0] == 2
    assert torch.equal(one.particles.a, whole.particles.select(1).a)


def test_bad_seeds_refused():
    with pytest.raises(ValueError, match="3 systems"):
        system_seeds([1, 2], 3)
    with pytest.raises(ValueError, match="integer"):
        system_seeds(1.5, 2)
    with pytest.raises(ValueError, match="non-negative"):
        system_seeds(-4, 1)
    with pytest.raises(ValueError, match="2 generator"):
        SystemNoise([1, 2, 3], "cpu").set_state(SystemNoise([1, 2], "cpu").get_state())


def test_noisy_sweep_does_not_depend_on_batching(tmp_path):
    """The reviewer's case: with flow.tau > 0 a point's numbers were those of the batch it fell
    in; now batched, unbatched and other batch sizes give one table."""
    from test_sweep import _same_table
    from meanfield.sweep import sweep
    grid = {"data.p3": "1,2", "flow.tau": "0,1e-3"}
    fixed = {"flow.t_end": 50.0, "m": 30, "flow.ds": 0.05}
    a = sweep("three_atoms", grid, seeds=2, fixed=fixed, out=tmp_path / "a", plot=False)
    b = sweep("three_atoms", grid, seeds=2, fixed=fixed, out=tmp_path / "b", batch=False,
              plot=False)
    c = sweep("three_atoms", grid, seeds=2, fixed=fixed, out=tmp_path / "c", batch_size=3,
              plot=False)
    assert a.computed == b.computed == c.computed == 8
    _same_table(a.rows, b.rows)
    _same_table(a.rows, c.rows)
