import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from cad2scan.errors import ConfigError
from cad2scan.model.hull import ConvexHullAlignment, HullConfig


def _module(feature_dim=12, seed=0, dtype=torch.float32, **cfg):
    torch.manual_seed(seed)
    return ConvexHullAlignment(feature_dim, HullConfig(**cfg)).to(dtype)


def _features(n, d, seed=1, dtype=torch.float32, scale=3.0):
    generator = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, d, generator=generator)).to(dtype)


def test_default_config_is_the_paper_setting():
    cfg = HullConfig()
    assert (cfg.num_prototypes, cfg.proj_dim, cfg.temperature, cfg.similarity, cfg.projection) == (
        128, 16, 0.5, "dot", "linear",
    )


@pytest.mark.parametrize(
    "field, value",
    [("num_prototypes", 0), ("proj_dim", -3), ("temperature", 0.0), ("temperature", float("nan")),
     ("similarity", "l2"), ("projection", "mlp"), ("num_prototypes", 2.5)],
)
def test_invalid_config_raises_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        HullConfig(**{field: value})


@pytest.mark.parametrize("similarity, projection", [("dot", "linear"), ("cos", "identity"), ("cos", "linear"),
                                                    ("dot", "identity")])
def test_shapes_and_coefficients_are_a_probability_simplex(similarity, projection):
    module = _module(feature_dim=12, num_prototypes=20, similarity=similarity, projection=projection)
    aligned, coefficients = module(_features(300, 12))
    assert aligned.shape == (300, 12) and aligned.dtype == torch.float32
    assert coefficients.shape == (300, 20)
    assert (coefficients >= 0).all()
    torch.testing.assert_close(coefficients.sum(dim=1), torch.ones(300), atol=1e-6, rtol=0)


def test_aligned_features_are_coefficients_times_prototypes():
    module = _module(feature_dim=12, num_prototypes=20)
    aligned, coefficients = module(_features(100, 12))
    torch.testing.assert_close(aligned, coefficients @ module.prototypes, atol=1e-6, rtol=1e-6)


def test_aligned_features_lie_in_the_convex_hull_of_the_prototypes_by_linear_programming():
    module = _module(feature_dim=6, num_prototypes=10, dtype=torch.float64)
    with torch.no_grad():
        aligned, _ = module(_features(5, 6, dtype=torch.float64))
    prototypes = module.prototypes.detach().numpy()  # (K, D)
    k = prototypes.shape[0]
    # feasibility: lambda >= 0, sum(lambda) = 1, P^T lambda = x_hat
    equality = np.vstack([prototypes.T, np.ones((1, k))])
    for point in aligned.numpy():
        solution = linprog(np.zeros(k), A_eq=equality, b_eq=np.append(point, 1.0), bounds=(0, None), method="highs")
        assert solution.status == 0, solution.message
    # control: a point far outside the hull is infeasible, so the check can fail
    outside = prototypes.max(axis=0) + 1.0
    solution = linprog(np.zeros(k), A_eq=equality, b_eq=np.append(outside, 1.0), bounds=(0, None), method="highs")
    assert solution.status == 2


def test_gradients_reach_prototypes_and_both_projections():
    module = _module(feature_dim=12, num_prototypes=16)
    features = _features(64, 12).requires_grad_(True)
    aligned, _ = module(features)
    target = _features(64, 12, seed=9)
    ((aligned - target) ** 2).sum().backward()
    for name in ("prototypes", "theta.weight", "theta.bias", "phi.weight", "phi.bias"):
        grad = dict(module.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_cos_identity_mode_has_only_prototypes_as_parameters():
    module = _module(feature_dim=12, num_prototypes=16, similarity="cos", projection="identity")
    assert [name for name, _ in module.named_parameters()] == ["prototypes"]
    linear = _module(feature_dim=12, num_prototypes=16)
    assert {name for name, _ in linear.named_parameters()} == {
        "prototypes", "theta.weight", "theta.bias", "phi.weight", "phi.bias"}
    assert linear.theta.out_features == 16


def test_cos_similarity_bounds_logits_so_coefficients_stay_near_uniform():
    # logits = 0.5 * cos lie in [-0.5, 0.5], so any two coefficients differ by at most a factor e
    module = _module(feature_dim=12, num_prototypes=8, similarity="cos", projection="identity")
    _, coefficients = module(_features(200, 12, scale=100.0))
    ratio = coefficients.max(dim=1).values / coefficients.min(dim=1).values
    assert (ratio <= np.exp(1.0) + 1e-5).all()


def test_float64_input_is_computed_in_float64():
    module = _module(feature_dim=12, num_prototypes=16, dtype=torch.float64)
    features = _features(50, 12, dtype=torch.float64)
    aligned, coefficients = module(features)
    assert aligned.dtype == torch.float64 and coefficients.dtype == torch.float64
    torch.testing.assert_close(coefficients.sum(dim=1), torch.ones(50, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_autocast_gives_finite_simplex_coefficients(dtype):
    module = _module(feature_dim=12, num_prototypes=32)
    features = _features(200, 12, scale=300.0)  # large logits would overflow in fp16
    with torch.autocast(device_type="cpu", dtype=dtype):
        aligned, coefficients = module(features.to(dtype))
    assert coefficients.dtype == torch.float32
    assert torch.isfinite(aligned).all() and torch.isfinite(coefficients).all()
    torch.testing.assert_close(coefficients.sum(dim=1), torch.ones(200), atol=1e-6, rtol=0)
    reference, _ = module(features.to(dtype).float())
    torch.testing.assert_close(aligned.float(), reference, atol=2e-2, rtol=2e-2)


def test_prototype_initialisation_scale_is_about_one_over_sqrt_dim():
    module = _module(feature_dim=96, num_prototypes=128)
    std = module.prototypes.detach().std().item()
    assert std == pytest.approx(1 / np.sqrt(96), rel=0.1)


def test_wrong_feature_width_is_rejected():
    module = _module(feature_dim=12)
    with pytest.raises(ValueError, match="12"):
        module(torch.zeros(4, 11))
