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

