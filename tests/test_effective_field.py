"""The effective receptive field against the theoretical one and Luo et al.'s analytic case."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.effective_field import analytic_standard_deviation, effective_field


@pytest.mark.parametrize("layers", [3, 6])
def test_uniform_linear_stack_matches_the_analytic_spread(layers):
    """n 3x3 convolutions of equal positive weights, no nonlinearity: the gradient is the
    n-fold convolution of a uniform 3-box, of standard deviation sqrt(n (k^2 - 1) / 12)."""
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(layers)])
    for convolution in stack:
        nn.init.constant_(convolution.weight, 1 / 9)
    field = effective_field(stack, torch.rand(2, 1, 33, 33), str(layers - 1))
    expected = analytic_standard_deviation(layers, 3)
    for spread in field.standard_deviation():
        assert spread == pytest.approx(expected, rel=0.1)
    assert field.theoretical_side == 2 * layers + 1
    assert field.mass_square(0.99) <= field.theoretical_side


@pytest.mark.parametrize("model_name, layer, side", [("lenet5", "features.3", 32), ("resnet20", "layer2", 32)])
def test_no_gradient_outside_the_theoretical_field(model_name, layer, side):
    from convzoo.registry import create_model

    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, in_channels=1).eval()
    field = effective_field(model, torch.rand(4, 1, side, side), layer)
    assert field.outside_mass() == 0.0  # exact: not a single pixel beyond the box moves the unit
    assert field.gradient.sum() > 0
    squares = [field.mass_square(fraction) for fraction in (0.5, 0.9, 0.99)]
    assert squares == sorted(squares) and squares[-1] <= field.theoretical_side


def test_mass_square_is_centred_on_the_field():
    from convzoo.effective_field import EffectiveField

    gradient = torch.zeros(9, 9)
    gradient[4, 4] = 0.6
    gradient[4, 6] = 0.4  # two pixels right of the centre: the square must reach side 5
    field = EffectiveField("x", gradient, (0, 0), ((0, 8), (0, 8)), 1)
    assert field.mass_square(0.5) == 1
    assert field.mass_square(0.9) == 5
    assert field.fraction_of_field(0.9) == pytest.approx(5 / 9)


def test_erf_says_when_the_field_exceeds_the_input_and_reports_no_clipped_squares(cli, tmp_path):
    """The README's example: ResNet-56's 249-pixel field in 64-pixel noise images."""
    import json

    code, out, err = cli("visualize", "erf", "--model", "resnet56", "--random-init", "--noise", "--input-side", "64",
                         "--samples", "2", "--out", tmp_path, "--json")
    assert code == 0, err
    (row,) = json.loads(out)["results"]
    assert row["theoretical_side"] > 64 and row["exceeds_input"] and row["input_side"] == [64, 64]
    for percent in (50, 90, 99):
        side = row[f"square_{percent}"]
        assert side is None or side < 63  # a square reaching the edge is not reported as the field
    assert row["square_99"] is None and row["fraction_99"] is None
    code, out, err = cli("visualize", "erf", "--model", "resnet56", "--random-init", "--noise", "--input-side", "64",
                         "--samples", "2", "--out", tmp_path)
    assert code == 0 and "exceeds the 64x64 input" in out and "clipped" in out


def test_erf_of_a_field_inside_the_image_reports_every_square(cli, tmp_path):
    import json

    code, out, err = cli("visualize", "erf", "--model", "lenet5", "--random-init", "--noise", "--samples", "2",
                         "--out", tmp_path, "--json")
    assert code == 0, err
    (row,) = json.loads(out)["results"]
    assert not row["exceeds_input"] and all(row[f"square_{p}"] for p in (50, 90, 99))
