"""The model registry (meanfield.models): built-ins, describe, build from a ModelSpec, user models."""

import pytest
import torch

from meanfield.models import (build_model, describe_model, get_model, list_models, register_model,
                              unregister_model)
from meanfield.study.spec import ModelSpec, apply_overrides


def test_builtins_listed_and_described():
    assert {"meanfield", "two_layer", "deep", "mlp", "convnet"} <= set(list_models())
    d = describe_model("deep")
    assert d["name"] == "deep" and d["description"]
    assert d["params"] == {"width": 128, "depth": 4, "init_scale": 1.0}
    assert describe_model("mlp")["params"]["activation"] == "relu"
    assert "m" in describe_model("meanfield")["params"]
    for name in list_models():  # seed/dtype/device are never model parameters
        assert not {"seed", "dtype", "device"} & set(describe_model(name)["params"])


def test_unknown_model_lists_valid():
    with pytest.raises(ValueError, match="valid: .*deep"):
        get_model("resnet")
    with pytest.raises(ValueError, match="parameters: width, depth, init_scale"):
        build_model(ModelSpec("deep", {"widht": 3}), 4, 2)


def test_build_each_builtin():
    deep = build_model(ModelSpec("deep", {"width": 8, "depth": 3}), 5, 3, seed=1)
    assert deep(torch.randn(2, 5)).shape == (2, 3) and deep.classifier.bias is None
    assert len(deep.weights()) == 3
    mlp = build_model(ModelSpec("mlp", {"width": 8, "depth": 2, "activation": "tanh"}), 5, 3,
                      dtype="float64")
    assert next(mlp.parameters()).dtype == torch.float64 and mlp.classifier.bias is not None
    two = build_model("two_layer", 5, 3, width=7)
    assert two.feature_dim == 7 and len(two.layers()) == 2
    p = build_model(ModelSpec("meanfield", {"m": 30}), 2, 2, dtype=torch.float64)
    assert (p.m, p.d, p.k) == (30, 2, 1)
    conv = build_model(ModelSpec("convnet", {"channels": (4,), "feature_dim": 6}), 64, 10)
    assert conv(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_same_seed_same_model_and_matches_engine_class():
    from meanfield.deep.models import DeepHomogeneousMLP
    a = build_model(ModelSpec("deep", {"width": 8, "depth": 3}), 5, 3, seed=4)
    b = DeepHomogeneousMLP(5, 8, 3, 3, seed=4)
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)


def test_spec_overrides_use_model_defaults():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class C:
        model: ModelSpec = ModelSpec("deep", {"width": 16})

    c = apply_overrides(C(), {"model.depth": "3", "model.width": "32"})
    assert c.model.kwargs == {"width": 32, "depth": 3}
    c = apply_overrides(C(), {"model": "mlp", "model.activation": "tanh"})
    assert c.model.name == "mlp" and c.model.kwargs == {"activation": "tanh"}
    with pytest.raises(ValueError, match="its parameters: width, depth, init_scale"):
        apply_overrides(C(), {"model.activation": "tanh"})


def test_register_user_model():
    def tiny(input_dim, num_classes, *, seed=0, dtype=torch.float32, device=None, hidden: int = 3):
        """A user's net."""
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(input_dim, hidden), torch.nn.Linear(hidden, num_classes))

    register_model("tiny_test", tiny)
    try:
        assert describe_model("tiny_test") == {"name": "tiny_test", "description": "A user's net.",
                                               "params": {"hidden": 3}}
        assert build_model(ModelSpec("tiny_test", {"hidden": 4}), 2, 2)[0].out_features == 4
        with pytest.raises(ValueError, match="already registered"):
            register_model("tiny_test", tiny)
        register_model("tiny_test", tiny, overwrite=True)
    finally:
        unregister_model("tiny_test")
    assert "tiny_test" not in list_models()
    with pytest.raises(ValueError, match="built in"):
        register_model("deep", tiny, overwrite=True)
    with pytest.raises(ValueError, match="built in"):
        unregister_model("deep")
    with pytest.raises(ValueError, match="factory"):
        register_model("bad_test", lambda x: x)
