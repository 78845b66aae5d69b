"""Default training recipes: which values a run takes from its model, and who overrides them."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from convzoo.config import TrainConfig, load_config
from convzoo.recipes import DEFAULT_RECIPE, MAX_WARMUP_SHARE, RECIPE_KEYS
from convzoo.registry import get_model_info, list_models


def test_the_default_recipe_is_the_config_defaults():
    """Models without a recipe of their own (LeNet-5) train exactly as before recipes existed."""
    defaults = TrainConfig()
    for key in RECIPE_KEYS:
        assert getattr(DEFAULT_RECIPE, key) == getattr(defaults, key), key
    assert get_model_info("lenet5").recipe is DEFAULT_RECIPE
    assert load_config(None, {"model": "lenet5"}) == TrainConfig()


def test_every_recipe_is_a_valid_config_and_cites_its_source():
    from convzoo.config import config_from_dict

    for name in list_models():
        recipe = get_model_info(name).recipe
        values = {key: value for key, value in recipe.as_dict().items() if key != "source"}
        config_from_dict({"model": name, **values, "epochs": 10})
        assert recipe.source, name


def test_a_model_recipe_fills_what_the_user_left_unset():
    config = load_config(None, {"model": "resnet50"})
    recipe = get_model_info("resnet50").recipe
    assert (config.lr, config.weight_decay, config.label_smoothing) == (recipe.lr, 1e-4, 0.1)
    assert config.warmup_epochs == 1.0
    assert config.model_kwargs == {"zero_init_residual": True}


def test_flags_set_and_yaml_override_the_recipe(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: resnet50\nlabel_smoothing: 0.0\nweight_decay: 0.0005\n")
    config = load_config(path, {"weight_decay": 0.001, "warmup_epochs": 0.25})
    assert config.label_smoothing == 0.0  # the file's
    assert config.weight_decay == 0.001  # the flag's, over the file's
    assert config.warmup_epochs == 0.25
    assert config.lr == get_model_info("resnet50").recipe.lr  # the recipe's, untouched by both


def test_a_given_model_kwargs_replaces_the_recipes_whole():
    assert load_config(None, {"model": "resnet50", "model_kwargs": {}}).model_kwargs == {}


def test_the_rate_scales_with_the_batch_when_only_the_batch_is_given():
    """Goyal et al. 2017, section 2.1: rate proportional to the batch for SGD."""
    recipe = get_model_info("resnet50").recipe
    assert (recipe.batch_size, recipe.lr) == (64, 0.025)  # 0.1 x 64/256
    assert load_config(None, {"model": "resnet50", "batch_size": 256}).lr == pytest.approx(0.1)
    assert load_config(None, {"model": "resnet50", "batch_size": 32}).lr == pytest.approx(0.0125)
    assert load_config(None, {"model": "resnet50", "batch_size": 32, "lr": 0.3}).lr == 0.3
    densenet = get_model_info("densenet121").recipe
    assert densenet.batch_size == 64  # the paper's batch
    assert load_config(None, {"model": "densenet121"}).batch_size == 64


def test_adamw_over_an_sgd_recipe_takes_adamws_rate():
    assert load_config(None, {"model": "resnet50", "optimizer": "adamw"}).lr == pytest.approx(1e-3)


def test_the_recipes_warmup_takes_at_most_a_quarter_of_a_short_run():
    assert load_config(None, {"model": "vgg16", "epochs": 2}).warmup_epochs == pytest.approx(2 * MAX_WARMUP_SHARE)
    assert load_config(None, {"model": "vgg16", "epochs": 1}).warmup_epochs == pytest.approx(MAX_WARMUP_SHARE)
    assert load_config(None, {"model": "vgg16", "epochs": 20}).warmup_epochs == 1.0
    # A warm-up the user sets is the user's: too long is still an error.
    from convzoo.errors import ConvzooError

    with pytest.raises(ConvzooError, match="warmup_epochs"):
        load_config(None, {"model": "vgg16", "epochs": 1, "warmup_epochs": 1.0})


def test_the_shipped_configs_that_were_measured_keep_their_values():
    """BENCHMARKS.md's LeNet-5 and ResNet-20 numbers were measured with these exact values."""
    from tests.conftest import REPO

    lenet = load_config(REPO / "configs" / "lenet5-mnist.yaml")
    assert (lenet.lr, lenet.schedule, lenet.warmup_epochs, lenet.model_kwargs) == (0.1, "onecycle", 0.0, {})
    for name in ("resnet20-fashion-mnist", "resnet20-cifar10"):
        config = load_config(REPO / "configs" / f"{name}.yaml")
        file_values = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
        assert config.model_kwargs == {"zero_init_residual": False}
        assert config.warmup_epochs == file_values.get("warmup_epochs", 0.0)
        assert config.weight_decay == file_values["weight_decay"]


def test_list_json_shows_the_recipe_that_config_yaml_records(cli, tmp_path):
    code, out, _ = cli("list", "resnet20", "--json")
    assert code == 0
    (row,) = json.loads(out)["models"]
    shown = row["recipe"]
    assert "He et al. 2015" in shown["source"]
    code, out, err = cli("train", "--model", "resnet20", "--epochs", "1", "--set", "train_size=128",
                         "--set", "test_size=32", "--batch-size", "128", "--device", "cpu",
                         "--out", tmp_path, "--name", "run", "--json")
    assert code == 0, err
    assert "resnet20's default recipe: lr=0.1, weight_decay=0.0001, zero_init_residual=True" in err
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    for key in RECIPE_KEYS:
        if key != "warmup_epochs":  # capped to a quarter of this 1-epoch run
            assert recorded[key] == shown[key], key


def test_list_of_one_model_prints_its_recipe(cli):
    code, out, _ = cli("list", "vgg16")
    assert code == 0
    assert "default recipe" in out and "'init': 'he'" in out


def test_zero_init_residual_keeps_torchvisions_state_dict():
    """The recipe's zero-initialised blocks change values, never names or shapes: torchvision's
    weights load strictly, and every last BatchNorm of a block starts at zero."""
    import torch
    import torchvision

    from convzoo.models.resnet import BasicBlock, Bottleneck
    from convzoo.registry import create_model

    for name in ("resnet18", "resnet50"):
        model = create_model(name, zero_init_residual=True)
        blocks = [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]
        assert blocks and all(torch.count_nonzero(block.last_bn().weight) == 0 for block in blocks)
        reference = getattr(torchvision.models, name)(weights=None)
        model.load_state_dict(reference.state_dict(), strict=True)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


def test_weights_file_overrides_the_recipes_initialisation(tmp_path):
    """``--weights`` after a recipe's zero-init: the run starts from the file's tensors exactly."""
    import torch
    import torchvision

    from convzoo.data import get_dataset_spec
    from convzoo.engine.setup import build_model
    from convzoo.models.pretrained import load_pretrained

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)
    config = load_config(None, {"model": "resnet18"})
    spec = dataclasses.replace(get_dataset_spec("synthetic", image_size=224, channels=3), num_classes=1000)
    model = build_model("resnet18", spec, 224, model_kwargs=config.model_kwargs)
    load_pretrained(model, "resnet18", str(path))  # as train loads --weights after building
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


@pytest.mark.parametrize("name", ["vgg16", "alexnet"])
def test_he_initialisation_keeps_a_plain_networks_signal(name):
    """He et al. 2015's scale keeps logits of a plain small-input network well above zero;
    torchvision's leaves them near 0, where the loss sits at ln(classes) and SGD stalls."""
    import torch

    from convzoo.registry import create_model

    torch.manual_seed(0)
    images = torch.randn(16, 1, 28, 28)
    spread = {}
    for init in ("torchvision", "he"):
        model = create_model(name, num_classes=10, in_channels=1, image_size=28, init=init).eval()
        with torch.no_grad():
            spread[init] = model(images).std().item()
    assert spread["torchvision"] < 0.02 and spread["he"] > 100 * spread["torchvision"]


def _train_cli(cli, tmp_path, name, *flags):
    code, out, err = cli("train", "--model", "lenet5", "--epochs", "2", "--batch-size", "32", "--device", "cpu",
                         "--set", "train_size=640", "--set", "test_size=128", "--out", tmp_path, "--name", name,
                         "--json", *flags)
    assert code == 0, err
    return json.loads(out), err


def test_the_divergence_guard_says_so_once_on_a_huge_rate(cli, tmp_path):
    """A rate of 50 (clipped so that the loss stays finite and the run goes on) diverges:
    one line says so, naming the fixes, and the JSON result carries it."""
    result, err = _train_cli(cli, tmp_path, "huge", "--lr", "50", "--set", "grad_clip=1")
    lines = [line for line in err.splitlines() if "diverging" in line]
    assert len(lines) == 1, err
    assert "--lr (now 50)" in lines[0] and "warmup_epochs" in lines[0]
    assert result["warnings"] == [lines[0]]


def test_the_divergence_guard_is_silent_on_the_default_recipe(cli, tmp_path):
    result, err = _train_cli(cli, tmp_path, "default")
    assert "diverging" not in err and result["warnings"] == []


def test_the_guard_reads_the_training_loss_per_window_after_the_warmup():
    import torch

    from convzoo.engine.divergence import DivergenceGuard

    said = []
    guard = DivergenceGuard(num_classes=10, warmup_steps=5, lr=0.1, message=said.append, window=4)
    for step in range(1, 9):  # steps 1-5 warm up; 6-8 are not yet a whole window
        guard.after_step(step, torch.tensor(50.0), 32)
    assert said == []
    guard.after_step(9, torch.tensor(50.0), 32)
    assert len(said) == 1 and "steps 6-9" in said[0]
    guard.after_step(13, torch.tensor(50.0), 32)
    guard.after_evaluation(1e4, epoch=2)
    assert len(said) == 1  # once per run
    quiet = DivergenceGuard(num_classes=10, warmup_steps=0, lr=0.1, message=said.append, window=2)
    for step in range(1, 10):
        quiet.after_step(step, torch.tensor(2.0), 32)  # a high but learning-range loss: 2 < 3 x ln 10
    quiet.after_evaluation(11.0, epoch=1)  # below 5 x ln 10
    assert quiet.warning is None


def test_a_usage_error_is_one_line_without_the_recipe_line(cli, tmp_path):
    """The recipe line is said as training starts, never before a refusal."""
    code, _, err = cli("train", "--model", "resnet50", "--epochs", "0", "--out", tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "recipe" not in err


def test_no_recipe_turns_on_ema_mixing_or_stochastic_depth():
    """Issue 24's tricks are asked for, never a model's default."""
    for name in list_models():
        config = load_config(None, {"model": name})
        assert (config.ema, config.mixup, config.cutmix, config.drop_path) == (None, 0.0, 0.0, 0.0), name
