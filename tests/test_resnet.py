"""ResNet-18 (CIFAR variant): its size against the published count and the closed form, the two
reductions to K features, the fixed-ETF preset of the fixed_etf experiment, bad input."""

import pytest
import torch

from meanfield.deep.fixed_etf import fix_classifier
from meanfield.deep.resnet import (ResNet18, resnet18_buffer_bytes, resnet18_num_params,
                                   state_saving_theory, synthetic_cifar)
from meanfield.study import run_experiment

SMALL = (4, 8, 16, 32)


def _counts(model):
    return (sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(b.numel() * b.element_size() for b in model.buffers()))


def test_resnet18_has_the_published_parameter_count():
    # 11,173,962: the CIFAR ResNet-18 with a 10-way linear classifier, as commonly reported.
    net = ResNet18(3, 10)
    assert _counts(net)[0] == 11_173_962 == resnet18_num_params()
    assert _counts(net)[1] == resnet18_buffer_bytes()


@pytest.mark.parametrize("reduce", ["linear", "last_block"])
@pytest.mark.parametrize("C,in_ch", [(10, 3), (7, 1)])
def test_closed_form_counts_match_the_built_models(reduce, C, in_ch):
    net = fix_classifier(ResNet18(in_ch, C, widths=SMALL, feature_dim=C, reduce=reduce))
    p, b = _counts(net)
    assert p == resnet18_num_params(in_channels=in_ch, num_classes=C, widths=SMALL, feature_dim=C,
                                    reduce=reduce, fixed_classifier=True)
    assert b == resnet18_buffer_bytes(in_channels=in_ch, widths=SMALL, feature_dim=C, reduce=reduce) + 4 * C * C
    x = torch.randn(3, in_ch, 32, 32)
    assert net.features(x).shape == (3, C) and net(x).shape == (3, C)


def test_reductions_at_full_width():
    """linear: the same trainable count (512 K + K moves from classifier to reduction); last_block:
    one 512x512x3x3 convolution becomes 512xKx3x3 (plus a 1x1 projection), about a fifth."""
    full = resnet18_num_params()
    lin = resnet18_num_params(feature_dim=10, reduce="linear", fixed_classifier=True)
    blk = resnet18_num_params(feature_dim=10, reduce="last_block", fixed_classifier=True)
    assert lin == full
    # removed: 9*512*(512-10) (second conv) + 2*(512-10) (its BN) - 512*10 - 2*10 (projection) + 5130 (classifier)
    assert full - blk == 9 * 512 * 502 + 2 * 502 - 5120 - 20 + 5130
    assert 0.20 < 1 - blk / full < 0.21
    assert state_saving_theory(reduce="linear") < 0 < state_saving_theory(reduce="last_block")


def test_fixed_classifier_needs_reduced_features():
    with pytest.raises(ValueError, match="feature dimension"):
        fix_classifier(ResNet18(3, 10, widths=SMALL))


@pytest.mark.parametrize("kw,match", [({"reduce": "pool"}, "unknown reduce"),
                                      ({"widths": (4, 8, 16)}, "4 stage widths"),
                                      ({"widths": (4, 8, 0, 32)}, "positive integer"),
                                      ({"feature_dim": 2.5}, "positive integer")])
def test_bad_parameters_are_value_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        ResNet18(3, 10, **kw)


def test_flat_inputs_and_bad_synthetic_data_are_refused():
    with pytest.raises(ValueError, match="images"):
        ResNet18(3, 10, widths=SMALL).features(torch.randn(2, 3072))
    with pytest.raises(ValueError, match="per_class"):
        synthetic_cifar(0)


def test_synthetic_cifar_shapes_and_shared_templates():
    a, b = synthetic_cifar(3, 4, seed=0), synthetic_cifar(3, 4, seed=1)
    assert a.X.shape == (12, 3072) and a.image_shape == (3, 32, 32) and a.num_classes == 4
    assert not torch.equal(a.X, b.X)
    # the same templates: noise-free images are equal across seeds
    assert torch.equal(synthetic_cifar(1, 4, noise=0.0, seed=0).X, synthetic_cifar(1, 4, noise=0.0, seed=5).X)


@pytest.mark.parametrize("reduce", ["linear", "last_block"])
def test_fixed_etf_resnet_preset_counts_exactly(tmp_path, reduce):
    ov = {"preset": "resnet18", "resnet.widths": "4,8,16,32", "resnet.per_class": 2,
          "resnet.batch": 4, "resnet.steps": 2, "resnet.reduce": reduce}
    res = run_experiment("fixed_etf", ov, out=tmp_path / reduce, progress=False)
    s = res.summary
    assert s["state_saving_agrees"], (s["state_saving"], s["state_saving_theory"])
    assert s["fixed_num_trainable"] == resnet18_num_params(widths=SMALL, feature_dim=10, reduce=reduce,
                                                           fixed_classifier=True)
    assert s["learned_optimizer_bytes"] == s["learned_param_bytes"] == s["learned_grad_bytes"]
    assert s["fixed_buffer_bytes"] - 400 == resnet18_buffer_bytes(widths=SMALL, feature_dim=10, reduce=reduce)
    assert s["published_saving"] == 0.2 and s["synthetic"] is True
    assert all(k in s for k in ("loss_learned", "loss_fixed", "peak_saving", "param_saving", "total_saving"))
    assert (tmp_path / reduce / "fixed_etf.png").exists()


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        run_experiment("fixed_etf", {"preset": "vgg"}, write=False)


def test_registered_as_a_model():
    from meanfield.models import build_model, describe_model
    assert describe_model("resnet18")["params"]["reduce"] == "linear"
    net = build_model("resnet18", 3 * 32 * 32, 5, widths=(4, 8, 16, 32), feature_dim=5, reduce="last_block")
    assert _counts(net)[0] == resnet18_num_params(num_classes=5, widths=SMALL, feature_dim=5, reduce="last_block")
    with pytest.raises(ValueError, match="multiple of in_channels"):
        build_model("resnet18", 100, 5)
