"""FGSM and PGD: the properties every user of an attack relies on."""

from __future__ import annotations

import json

import pytest
import torch

from convzoo.adversarial import Attack, robust_accuracy

EPSILONS = [0.0, 0.005, 0.01, 0.02, 0.04]
"""Where the fixture's small LeNet-5 (synthetic shapes) is still above chance: beyond,
FGSM's single large step overshoots and its accuracy can rise again, as FGSM may."""


@pytest.fixture(scope="module")
def trained_lenet(lenet_checkpoint):
    from convzoo.inspection import build_source_model, input_pipeline, resolve_model_source, select_images

    source = resolve_model_source(checkpoint=lenet_checkpoint)
    spec, preprocessing = input_pipeline(source)
    images = select_images(spec, preprocessing, samples=200, seed=0)
    return build_source_model(source), preprocessing, images


@pytest.fixture(scope="module")
def curves(trained_lenet):
    model, preprocessing, images = trained_lenet
    return {method: robust_accuracy(Attack(model, method, preprocessing, steps=3), images.pixels, images.labels,
                                    EPSILONS, batch_size=128)
            for method in ("fgsm", "pgd")}


def test_eps_zero_is_exactly_the_clean_accuracy(trained_lenet, curves):
    model, preprocessing, images = trained_lenet
    with torch.no_grad():
        clean = (model(preprocessing.normalize(images.pixels)).argmax(1) == images.labels).sum().item()
    assert clean / len(images.labels) > 0.5  # the fixture's network did learn
    for curve in curves.values():
        assert curve.correct[0] == clean


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_adversarial_images_stay_in_the_ball_and_in_range(trained_lenet, method):
    model, preprocessing, images = trained_lenet
    attack = Attack(model, method, preprocessing, steps=3, random_start=True)
    for eps in (0.05, 0.3):
        adversarial = attack.perturb(images.pixels[:64], images.labels[:64], eps)
        assert (adversarial - images.pixels[:64]).abs().max() <= eps + 1e-6
        assert adversarial.min() >= 0 and adversarial.max() <= 1


def test_accuracy_does_not_rise_with_eps_and_pgd_is_stronger(curves):
    for curve in curves.values():
        assert all(later <= earlier for earlier, later in zip(curve.correct, curve.correct[1:])), curve.correct
    assert all(pgd <= fgsm for pgd, fgsm in zip(curves["pgd"].correct, curves["fgsm"].correct))
    assert curves["pgd"].accuracies[-1] < curves["pgd"].accuracies[0]


def test_one_gradient_sweep_equals_captums_fgsm_at_each_eps(trained_lenet):
    model, preprocessing, images = trained_lenet
    attack = Attack(model, "fgsm", preprocessing)
    for eps, adversarial in attack.sweep(images.pixels[:32], images.labels[:32], [0.0, 0.1, 0.25]):
        torch.testing.assert_close(adversarial, attack.perturb(images.pixels[:32], images.labels[:32], eps),
                                   rtol=0, atol=0)


def test_attack_cli_json_and_errors(cli, lenet_checkpoint, tmp_path):
    code, out, err = cli("attack", "--checkpoint", lenet_checkpoint, "--method", "fgsm,pgd", "--eps", "0,0.1",
                         "--steps", "2", "--samples", "64", "--out", tmp_path, "--name", "a", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert [(row["attack"], row["eps"]) for row in result["results"]] == [
        ("fgsm", 0.0), ("fgsm", 0.1), ("pgd", 0.0), ("pgd", 0.1)]
    assert {f.rsplit("/", 1)[-1] for f in result["files"]} >= {"attack.csv", "attack.png", "examples-fgsm.png",
                                                                "examples-pgd.png", "attack.json"}
    for arguments, message in ((["--eps", "0,1.5"], "outside [0, 1]"), (["--method", "cw"], "unknown attack"),
                               (["--eps", "a,b"], "not a comma-separated list")):
        code, _, err = cli("attack", "--checkpoint", lenet_checkpoint, "--samples", "8", "--out", tmp_path, *arguments)
        assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err


def test_pgd_starts_at_a_seeded_random_point_of_the_ball_by_default():
    """Issue 21, item 12: Madry et al.'s PGD starts uniformly inside the eps-ball. With one
    step of 1e-4 the perturbation is that start: spread over [-eps, eps], mean |delta| eps/2."""
    from convzoo.inspection import Preprocessing
    from convzoo.registry import create_model

    torch.manual_seed(0)
    model = create_model("lenet5").eval()
    preprocessing = Preprocessing(1, 28, 32, (0.1307,), (0.3081,), False)
    pixels = 0.25 + 0.5 * torch.rand(8, 1, 32, 32)  # eps = 0.2 from both ends: nothing is clamped
    labels = torch.arange(8)
    state = torch.get_rng_state()
    delta = Attack(model, "pgd", preprocessing, steps=1, step_size=1e-4).perturb(pixels, labels, 0.2) - pixels
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is left alone
    assert delta.abs().max() <= 0.2 + 1e-6
    assert delta.abs().mean().item() == pytest.approx(0.1, rel=0.05)
    assert (delta > 0.1).float().mean().item() == pytest.approx(0.25, abs=0.03)
    same = Attack(model, "pgd", preprocessing, steps=1, step_size=1e-4).perturb(pixels, labels, 0.2) - pixels
    other = Attack(model, "pgd", preprocessing, steps=1, step_size=1e-4, seed=1).perturb(pixels, labels, 0.2) - pixels
    assert torch.equal(delta, same) and not torch.equal(delta, other)
    fixed = Attack(model, "pgd", preprocessing, steps=1, step_size=1e-4, random_start=False)
    assert (fixed.perturb(pixels, labels, 0.2) - pixels).abs().max() <= 1e-4 + 1e-6


def test_attack_cli_says_whether_pgd_started_at_random(cli, lenet_checkpoint, tmp_path):
    common = ("attack", "--checkpoint", lenet_checkpoint, "--method", "pgd", "--eps", "0,0.1", "--steps", "1",
              "--samples", "16", "--out", tmp_path)
    code, out, err = cli(*common)
    assert code == 0, err
    assert "PGD started at a random point of the ε-ball (seed 0)" in out
    code, out, err = cli(*common, "--no-random-start", "--json")
    assert code == 0, err
    assert json.loads(out)["random_start"] is False
    code, out, err = cli(*common, "--json")
    assert json.loads(out)["random_start"] is True
