"""MixUp and CutMix (``--mixup``, ``--cutmix``): timm's batches, targets and loss; draws that
a resumed run repeats; what cannot apply is refused."""

import json

import numpy as np
import pytest
import torch

from convzoo.config import TrainConfig, config_from_dict, read_yaml
from convzoo.data.mixing import BatchMixer, build_mixer
from convzoo.tasks.classification import training_loss
from convzoo.errors import ConvzooError


def batch(size=6, classes=5):
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(size, 3, 8, 8, generator=generator), torch.randint(0, classes, (size,), generator=generator),
            torch.randn(size, classes, generator=generator))


@pytest.mark.parametrize("cutmix", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_batches_targets_and_loss_are_timms(monkeypatch, cutmix, smoothing):
    mixup_module = pytest.importorskip("timm.data.mixup")
    from timm.loss import SoftTargetCrossEntropy

    images, labels, logits = batch()
    timm_mixer = mixup_module.Mixup(mixup_alpha=0.0 if cutmix else 0.4, cutmix_alpha=1.0 if cutmix else 0.0,
                                    label_smoothing=smoothing, num_classes=5)
    monkeypatch.setattr(timm_mixer, "_params_per_batch", lambda: (0.7, cutmix))
    np.random.seed(5)
    timm_images, timm_targets = timm_mixer(images.clone(), labels)
    lam, box = 0.7, None
    if cutmix:  # the box timm drew, and its λ corrected from the box's clipped area
        np.random.seed(5)
        box, lam = mixup_module.cutmix_bbox_and_lam(images.shape, 0.7)
        box = tuple(int(edge) for edge in box)
    mixed, targets, dominant = BatchMixer(5, 0.4, 1.0 if cutmix else 0.0, label_smoothing=smoothing).mix(
        images, labels, lam, box)
    torch.testing.assert_close(mixed, timm_images, rtol=0, atol=1e-6)
    torch.testing.assert_close(targets, timm_targets, rtol=0, atol=1e-7)
    loss = training_loss(logits, targets, label_smoothing=smoothing, aux_weight=0.0)
    torch.testing.assert_close(loss, SoftTargetCrossEntropy()(logits, timm_targets))
    assert torch.equal(dominant, labels if lam >= 0.5 else labels.flip(0))


def test_cutmix_pastes_the_partners_box_and_lambda_is_its_clipped_area():
    images, labels, _ = batch()
    mixer = BatchMixer(5, cutmix_alpha=1.0)
    for seed in range(20):
        lam, (top, bottom, left, right) = mixer.draw(np.random.default_rng(seed), 8, 8)
        assert lam == 1 - (bottom - top) * (right - left) / 64
        mixed, targets, _ = mixer(images, labels, seed)
        inside = torch.zeros(8, 8, dtype=torch.bool)
        inside[top:bottom, left:right] = True
        assert torch.equal(mixed[..., inside], images.flip(0)[..., inside])
        assert torch.equal(mixed[..., ~inside], images[..., ~inside])
        torch.testing.assert_close(targets.sum(1), torch.ones(6))


def test_the_probabilities_choose_what_a_batch_gets():
    rng = np.random.default_rng(0)
    never = BatchMixer(5, mixup_alpha=0.2, cutmix_alpha=1.0, prob=0.0)
    assert all(never.draw(rng, 8, 8) == (1.0, None) for _ in range(50))
    draws = [BatchMixer(5, mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.3).draw(rng, 8, 8) for _ in range(400)]
    cutmixed = sum(box is not None for _, box in draws) / len(draws)
    assert 0.22 < cutmixed < 0.38


def test_mixing_that_cannot_apply_is_refused():
    with pytest.raises(ConvzooError, match="1x1 images"):
        build_mixer(TrainConfig(cutmix=1.0), num_classes=10, image_size=1)
    with pytest.raises(ConvzooError, match="--batch-size 1"):
        build_mixer(TrainConfig(mixup=0.2, batch_size=1), num_classes=10, image_size=8)
    assert build_mixer(TrainConfig(mixup=0.2), num_classes=10, image_size=1) is not None
    assert build_mixer(TrainConfig(), num_classes=10, image_size=8) is None
    for values in ({"mixup": -1.0}, {"mix_prob": 1.5}, {"mix_switch_prob": -0.1}):
        with pytest.raises(ConvzooError, match=next(iter(values))):
            config_from_dict(values)


def test_a_mixed_run_resumed_mid_epoch_is_bit_identical(tmp_path, monkeypatch, one_thread):
    from tests.engine.test_mid_epoch_resume import assert_resumed_mid_epoch_run_is_bit_identical

    stopped = assert_resumed_mid_epoch_run_is_bit_identical(tmp_path, monkeypatch, mixup=0.4, cutmix=1.0,
                                                            mix_prob=0.8, label_smoothing=0.1)
    (record, _) = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert record["train_acc_of"] == "dominant label"


def test_the_cli_trains_mixed_batches_on_mnist_and_says_what_accuracy_counts(tmp_path, cli, data_dir):
    from tests.conftest import require_dataset

    require_dataset(data_dir, "MNIST")
    code, _, stderr = cli(
        "train", "--model", "lenet5", "--dataset", "mnist", "--data-dir", data_dir, "--epochs", "1",
        "--batch-size", "32", "--set", "train_size=320", "--set", "test_size=100", "--mixup", "0.2", "--cutmix", "1",
        "--mix-prob", "0.9", "--device", "cpu", "--out", tmp_path, "--name", "mixed", "--quiet")
    assert code == 0, stderr
    assert "training accuracy against each image's dominant label" in stderr and "(dominant label)" in stderr
    saved = config_from_dict(read_yaml(tmp_path / "mixed" / "config.yaml"))
    assert (saved.mixup, saved.cutmix, saved.mix_prob, saved.mix_switch_prob) == (0.2, 1.0, 0.9, 0.5)
