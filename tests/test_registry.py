"""The one Registry type: get / list / register / unregister, lazy built-ins, clear errors."""

import pytest

from meanfield.registry import Registry, load_object


def test_register_get_list_unregister():
    r = Registry("colour", hint="register one with colours.register")
    assert r.register("red", (1, 0, 0)) == (1, 0, 0)
    assert r.get("red") == (1, 0, 0) and r.list() == ["red"] and "red" in r and len(r) == 1
    with pytest.raises(ValueError, match="already registered"):
        r.register("red", (2, 0, 0))
    r.register("red", (2, 0, 0), overwrite=True)
    assert r.get("red") == (2, 0, 0)
    r.unregister("red")
    with pytest.raises(ValueError, match=r"unknown colour 'red'; valid: \(none registered\) "
                                         r"\(register one with colours.register\)"):
        r.get("red")


def test_builtins_are_lazy_and_protected():
    calls = []

    def loader():
        calls.append(1)
        r.register("sqrt", "math:sqrt", builtin=True)

    r = Registry("function", loader=loader)
    assert calls == []                     # nothing at construction
    assert r.get("sqrt")(9.0) == 3.0 and calls == [1]
    with pytest.raises(ValueError, match="built in"):
        r.register("sqrt", abs)
    with pytest.raises(ValueError, match="built in"):
        r.unregister("sqrt")
    with pytest.raises(ValueError, match="valid: sqrt"):
        r.get("cbrt")


def test_validator_and_bad_names():
    def check(name, obj):
        if not callable(obj):
            raise ValueError(f"{name}: not callable")

    r = Registry("thing", check=check)
    with pytest.raises(ValueError, match="not callable"):
        r.register("x", 3)
    for bad in ("", "  ", None, 3):
        with pytest.raises(ValueError, match="non-empty string"):
            r.register(bad, abs)


def test_load_object_errors():
    assert load_object("os.path:join") is __import__("os").path.join
    with pytest.raises(ValueError, match="module:attribute"):
        load_object("os.path.join")
    with pytest.raises(ValueError, match="cannot import"):
        load_object("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="no attribute"):
        load_object("os:no_such_attr")



def test_every_kind_of_name_is_one_registry_type():
    from meanfield.activations import ACTIVATIONS
    from meanfield.atlas import ATLAS
    from meanfield.backends.base import BACKENDS
    from meanfield.data.registry import DISTRIBUTIONS
    from meanfield.losses import LOSSES
    from meanfield.models import MODELS
    from meanfield.phase import THEORIES
    from meanfield.stepping import INTEGRATORS
    from meanfield.study.experiment import EXPERIMENTS

    kinds = {"activation": ACTIVATIONS, "atlas entry": ATLAS, "backend": BACKENDS,
             "distribution": DISTRIBUTIONS, "loss": LOSSES, "model": MODELS,
             "theory boundary": THEORIES, "integrator": INTEGRATORS, "experiment": EXPERIMENTS}
    for kind, reg in kinds.items():
        assert isinstance(reg, Registry) and reg.kind == kind
        with pytest.raises(ValueError, match=rf"unknown {kind} 'no_such_name'; valid: "):
            reg.get("no_such_name")
        if kind != "theory boundary":
            assert len(reg) >= 1
            builtin = [n for n in reg.list() if reg.is_builtin(n)]   # other tests add user entries
            assert builtin, kind
            with pytest.raises(ValueError, match="built in"):
                reg.register(builtin[0], reg.get(builtin[0]))


def test_a_user_entry_round_trips_through_the_public_functions():
    import torch

    from meanfield.data import get_distribution, list_distributions, register_distribution
    from meanfield.data.core import PointMasses
    from meanfield.data.registry import unregister_distribution
    from meanfield.flow import get_integrator, list_integrators, register_integrator

    register_distribution("reg_test_atoms", lambda gap=1.0: PointMasses([[-gap], [gap]], [0, 1], [1, 1]))
    try:
        assert "reg_test_atoms" in list_distributions()
        s = get_distribution("reg_test_atoms", gap=2.0).sample(seed=0)
        assert torch.equal(s.X[:, 0], torch.tensor([-2.0, 2.0], dtype=s.X.dtype))
        with pytest.raises(ValueError, match="already registered"):
            register_distribution("reg_test_atoms", lambda: None)
    finally:
        unregister_distribution("reg_test_atoms")
    assert "reg_test_atoms" not in list_distributions()
    register_integrator("reg_test_euler", get_integrator("euler"))
    try:
        assert "reg_test_euler" in list_integrators()
    finally:
        from meanfield.stepping import INTEGRATORS
        INTEGRATORS.unregister("reg_test_euler")
