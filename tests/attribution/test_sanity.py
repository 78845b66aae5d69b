"""Adebayo et al.'s cascading randomisation on a trained LeNet-5."""

from __future__ import annotations

import pytest
import torch

from convzoo.attribution import Explainer, cascading_randomisation, spearman


def test_spearman_matches_its_definition_with_ties():
    first = torch.tensor([1.0, 2.0, 2.0, 3.0, 0.0])
    assert spearman(first, first * 10 + 1) == pytest.approx(1.0)
    assert spearman(first, -first) == pytest.approx(-1.0)
    # Ranks with the tie averaged, [1, 2.5, 2.5, 4, 0], against [0, 1, 2, 3, 4]: centred
    # dot product -0.5 over norms sqrt(9.5) sqrt(10).
    assert spearman(first, torch.arange(5.0)) == pytest.approx(-0.5 / 95 ** 0.5)


@pytest.fixture(scope="module")
def trained_lenet(lenet_checkpoint):
    from convzoo.inspection import build_source_model, input_pipeline, resolve_model_source, select_images

    source = resolve_model_source(checkpoint=lenet_checkpoint)
    spec, preprocessing = input_pipeline(source)
    images = select_images(spec, preprocessing, samples=4, seed=0)
    return build_source_model(source), preprocessing, images.pixels


@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_correlation_falls_as_layers_are_randomised(trained_lenet, method):
    model, preprocessing, pixels = trained_lenet
    explainer = Explainer(model, method, preprocessing, model_name="lenet5")
    result = cascading_randomisation(explainer, pixels, seed=0)
    assert result.steps == ["original", "classifier.2", "classifier.0", "features.6", "features.3", "features.0"]
    assert result.correlations[0] == 1.0
    # Grad-CAM's map is gone as soon as the logits are re-initialised; saliency fades layer by layer.
    assert max(result.correlations[1:]) < 0.95
    assert result.correlations[-1] < 0.6
    if method == "saliency":
        assert result.correlations[-1] < result.correlations[1]
    # The explainer's own model is untouched: the trained maps come back unchanged.
    torch.testing.assert_close(explainer.attribute(pixels), explainer.attribute(pixels))
    again = cascading_randomisation(explainer, pixels, seed=0)
    assert again.correlations == pytest.approx(result.correlations)
