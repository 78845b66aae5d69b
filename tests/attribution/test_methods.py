"""Attribution methods against what can be computed by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convzoo.attribution import Explainer
from convzoo.inspection import Preprocessing


def test_saliency_is_the_analytic_gradient_of_a_linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    inputs = torch.rand(2, 3, 2, 2)
    maps = Explainer(model, "saliency").attribute(inputs, target=[1, 2])
    weight = model[1].weight.detach()
    expected = torch.stack([weight[1], weight[2]]).abs().view(2, 3, 2, 2)  # Simonyan et al.: |d score / d x|
    torch.testing.assert_close(maps, expected)


def test_integrated_gradients_are_complete():
    """Sundararajan et al.'s completeness: attributions sum to f(x) - f(black)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    preprocessing = Preprocessing(1, 8, 8, (0.5,), (0.25,), False)
    pixels = torch.rand(3, 1, 8, 8)
    explainer = Explainer(model, "integrated-gradients", preprocessing, steps=50)
    targets = torch.tensor([0, 3, 4])
    attributions = explainer.attribute(pixels, targets)
    with torch.no_grad():
        scores = model(preprocessing.normalize(pixels)).gather(1, targets[:, None]).squeeze(1)
        black = model(preprocessing.normalize(torch.zeros_like(pixels))).gather(1, targets[:, None]).squeeze(1)
    gap = scores - black
    torch.testing.assert_close(attributions.sum((1, 2, 3)), gap, atol=1e-3 + 0.01 * gap.abs().max().item(), rtol=0)


def test_gradcam_of_a_hand_built_model():
    """One 1x1 stride-2 convolution, global average pooling, a linear head: Grad-CAM's
    channel weights are w_ck / (H W), the map ReLU(sum_k alpha_k A_k), upsampled bilinearly."""
    torch.manual_seed(0)
    features = nn.Conv2d(1, 2, kernel_size=1, stride=2, bias=False)
    with torch.no_grad():
        features.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
    head = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.5], [-1.0, 0.25], [0.0, 1.0]]))
    model = nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    inputs = torch.randn(2, 1, 8, 8)
    maps = Explainer(model, "gradcam", layer="0").attribute(inputs, target=[0, 1])
    activations = features(inputs).detach()  # (2, 2, 4, 4)
    alphas = head.weight[[0, 1]].detach() / 16
    expected = F.relu((alphas[:, :, None, None] * activations).sum(1, keepdim=True))
    expected = F.interpolate(expected, size=(8, 8), mode="bilinear")
    torch.testing.assert_close(maps, expected)


def test_smoothgrad_noise_is_a_fraction_of_each_images_range():
    """f(x) = sum(x^2) / 2 has gradient x, so SmoothGrad's map minus x is the noise
    averaged over the samples: its spread is sigma / sqrt(samples), sigma = 0.15 x range."""

    class HalfSquaredNorm(nn.Module):
        def forward(self, inputs):
            return 0.5 * inputs.pow(2).flatten(1).sum(1, keepdim=True)

    torch.manual_seed(0)
    image = 0.2 + 0.4 * torch.rand(1, 1, 48, 48)  # range 0.4: sigma must be 0.06, not 0.15
    image[0, 0, 0, 0], image[0, 0, 0, 1] = 0.2, 0.6
    maps = Explainer(HalfSquaredNorm(), "smoothgrad", noise=0.15, samples=50).attribute(image, target=0)
    measured_sigma = (maps - image).std().item() * 50 ** 0.5
    assert measured_sigma == pytest.approx(0.15 * 0.4, rel=0.1)


def test_in_place_relus_give_the_same_maps_and_are_left_alone():
    from convzoo.registry import create_model

    torch.manual_seed(0)
    model = create_model("lenet5").eval()
    out_of_place = create_model("lenet5").eval()
    out_of_place.load_state_dict(model.state_dict())
    for module in out_of_place.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    pixels = torch.rand(3, 1, 32, 32)
    preprocessing = Preprocessing(1, 28, 32, (0.1307,), (0.3081,), False)
    for method in ("saliency", "gradcam"):
        with_inplace = Explainer(model, method, preprocessing, model_name="lenet5").attribute(pixels)
        without = Explainer(out_of_place, method, preprocessing, model_name="lenet5").attribute(pixels)
        torch.testing.assert_close(with_inplace, without)
    assert all(module.inplace for module in model.modules() if isinstance(module, nn.ReLU))


def test_models_returning_auxiliary_heads_are_explained_by_their_main_logits():
    """GoogLeNet in training mode returns (logits, aux1, aux2); the explainer takes logits."""

    class WithAuxiliary(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, inputs):
            logits = self.linear(inputs.flatten(1))
            return logits, logits * 0

    model = WithAuxiliary()
    inputs = torch.rand(2, 1, 2, 2)
    maps = Explainer(model, "saliency").attribute(inputs, target=1)
    torch.testing.assert_close(maps, model.linear.weight[1].detach().abs().view(1, 1, 2, 2).expand(2, 1, 2, 2))


def test_gradcam_defaults_to_the_last_spatial_exit():
    from convzoo.registry import create_model

    explainer = Explainer(create_model("lenet5"), "gradcam", model_name="lenet5")
    assert explainer.layer_name(torch.zeros(1, 1, 32, 32)) == "features.4"  # 16x10x10; features.7 is 1x1


def test_an_out_of_range_target_is_a_one_line_error():
    from convzoo.errors import ConvzooError

    with pytest.raises(ConvzooError, match="out of range"):
        Explainer(nn.Sequential(nn.Flatten(), nn.Linear(4, 3))).attribute(torch.rand(1, 1, 2, 2), target=3)


def _lenet_logits_by_hand(model: nn.Module, preprocessing: Preprocessing, pixels: torch.Tensor, targets: list[int]):
    """LeNet-5 run module by module up to its last Linear layer (the logits, before the
    LogSoftmax): the pixel gradient of the target logits, and Grad-CAM at features.4 from
    its activations and their gradient (Selvaraju et al. 2017, eq. 1-2)."""
    pixels = pixels.clone().requires_grad_(True)
    activations = model.features[:5](preprocessing.normalize(pixels))
    activations.retain_grad()
    logits = model.classifier[:3](torch.flatten(model.features[5:](activations), 1))
    assert isinstance(model.classifier[3], nn.LogSoftmax)
    logits[torch.arange(len(targets)), targets].sum().backward()
    alphas = activations.grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((alphas * activations).sum(1, keepdim=True))
    return pixels.grad.abs(), F.interpolate(cam, size=pixels.shape[-2:], mode="bilinear").detach()


@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_lenet5_is_explained_by_its_logits_not_its_log_softmax(method):
    """Issue 21, item 11: saliency (Simonyan et al. 2014) and Grad-CAM (Selvaraju et al.
    2017) differentiate the class score *before* LeNet-5's final LogSoftmax."""
    from convzoo.registry import create_model

    torch.manual_seed(0)
    model = create_model("lenet5").eval()
    preprocessing = Preprocessing(1, 28, 32, (0.1307,), (0.3081,), False)
    pixels = torch.rand(3, 1, 32, 32)
    targets = [3, 7, 1]
    saliency, gradcam = _lenet_logits_by_hand(model, preprocessing, pixels, targets)
    expected = saliency if method == "saliency" else gradcam
    maps = Explainer(model, method, preprocessing, model_name="lenet5").attribute(pixels, targets)
    assert expected.abs().amax() > 0
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-4 * expected.abs().amax().item())


def test_integrated_gradients_of_lenet5_sum_to_the_logit_gap():
    """Completeness (Sundararajan et al. 2017) holds for the score explained: the logits'
    difference to the black image, not the log-probabilities' (-0.24 and -1.30 here)."""
    from convzoo.registry import create_model

    torch.manual_seed(0)
    model = create_model("lenet5").eval()
    with torch.no_grad():
        model.classifier[2].weight.mul_(30)  # logits far enough apart for log-softmax to differ from them
    preprocessing = Preprocessing(1, 28, 32, (0.1307,), (0.3081,), False)
    pixels = torch.rand(2, 1, 32, 32)
    targets = torch.tensor([2, 5])
    attributions = Explainer(model, "integrated-gradients", preprocessing, steps=64).attribute(pixels, targets)
    with torch.no_grad():
        def logits(images):
            return model.classifier[:3](torch.flatten(model.features(preprocessing.normalize(images)), 1))
        gap = (logits(pixels) - logits(torch.zeros_like(pixels))).gather(1, targets[:, None]).squeeze(1)
    # 64 steps through ReLUs leave a few per cent of the gap (0.34 and -0.17) unexplained.
    torch.testing.assert_close(attributions.sum((1, 2, 3)), gap, atol=0.2 * gap.abs().max().item(), rtol=0)


def test_a_functional_softmax_at_the_end_is_read_before_and_one_inside_is_kept():
    from convzoo.inspection.scores import class_scores

    class EndsInSoftmax(nn.Module):
        def forward(self, inputs):
            return inputs.flatten(1).softmax(dim=1)

    class SoftmaxInside(nn.Module):
        def forward(self, inputs):
            return 2 * F.softmax(inputs.flatten(1), dim=1)

    inputs = torch.randn(2, 1, 2, 2)
    assert torch.equal(class_scores(EndsInSoftmax(), inputs), inputs.flatten(1))
    torch.testing.assert_close(class_scores(SoftmaxInside(), inputs), 2 * inputs.flatten(1).softmax(1))
