"""The class-geometry disk cache: JSON round trip, one computation per description, damaged or
foreign files recomputed, the switch that turns it off."""

import json

import numpy as np
import pytest

from meanfield.geometry import class_geometry
from meanfield.geometry.store import cached_geometry, geometry_from_dict, geometry_to_dict


def _geometry():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(12, 3)), rng.normal(size=(12, 3)) + 4.0,
                        rng.normal(size=(12, 3)) * 3.0])
    y = np.repeat([0, 1, 2], 12)
    return class_geometry(X, y), 3


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEANFIELD_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MEANFIELD_BACKBONE_CACHE", raising=False)
    return tmp_path / "geometry"


def test_round_trip_is_exact():
    g, _ = _geometry()
    back = geometry_from_dict(json.loads(json.dumps(geometry_to_dict(g))))
    assert back == g
    assert back.separable == g.separable and back.max_fraction == g.max_fraction
    # the three classes: 0 and 1 separable, 2 (wide) meets both
    assert g.pair(0, 1).separable and not g.pair(0, 2).separable


def test_computed_once_per_description(cache):
    calls = []

    def compute():
        calls.append(1)
        return _geometry()
    a = cached_geometry("spec A", compute)
    b = cached_geometry("spec A", compute)
    assert a == b and len(calls) == 1
    assert len(list(cache.glob("*.json"))) == 1
    cached_geometry("spec B", compute)
    assert len(calls) == 2


@pytest.mark.parametrize("content", ["{not json", json.dumps({"description": "spec A"}),
                                     json.dumps({"description": "spec A", "dim": 3,
                                                 "geometry": {"pairs": [{"a": 0}]}})])
def test_a_damaged_file_is_recomputed_and_replaced(cache, content):
    calls = []

    def compute():
        calls.append(1)
        return _geometry()
    want = cached_geometry("spec A", compute)
    (path,) = cache.glob("*.json")
    path.write_text(content)
    assert cached_geometry("spec A", compute) == want and len(calls) == 2
    assert json.loads(path.read_text())["description"] == "spec A"   # replaced by a good file


def test_a_file_of_another_description_is_not_used(cache):
    calls = []
    want = cached_geometry("spec A", lambda: (calls.append(1), _geometry())[1])
    (path,) = cache.glob("*.json")
    d = json.loads(path.read_text())
    d["description"] = "spec Z"            # a hash collision or a copied file
    path.write_text(json.dumps(d))
    assert cached_geometry("spec A", lambda: (calls.append(1), _geometry())[1]) == want
    assert len(calls) == 2


def test_switched_off_writes_nothing(cache, monkeypatch):
    monkeypatch.setenv("MEANFIELD_BACKBONE_CACHE", "0")
    calls = []
    for _ in range(2):
        cached_geometry("spec A", lambda: (calls.append(1), _geometry())[1])
    assert len(calls) == 2 and not cache.exists()


def test_geometry_from_dict_names_the_problem():
    with pytest.raises(ValueError, match="not a class geometry"):
        geometry_from_dict({"pairs": "x"})


def test_only_features_fixed_by_their_description_are_cached(monkeypatch):
    """A user's folder or weights file may change under the same name: never cached (the backbone
    cache and the geometry cache share this rule and the off switch)."""
    from meanfield.cache import results_cache_on
    from meanfield.data.features import fixed_by_description
    assert fixed_by_description(source="digits", layer=2)
    assert not fixed_by_description(source="mnist", folder="/data/mnist")
    assert not fixed_by_description(source="digits", backbone_file="w.pt")
    monkeypatch.setenv("MEANFIELD_BACKBONE_CACHE", "0")
    assert not results_cache_on()
    monkeypatch.setenv("MEANFIELD_BACKBONE_CACHE", "1")
    assert results_cache_on()
