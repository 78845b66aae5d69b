"""The shipped configs (one per family at least) and `convzoo list` cover the whole zoo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from convzoo.config import load_config
from convzoo.data.catalog import dataset_shape
from convzoo.model_catalog import meta_parameter_count
from convzoo.registry import create_model, get_model_info, list_models
from tests.conftest import require_dataset

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_config_is_valid_and_its_model_fits_its_dataset(path, request):
    config = load_config(path)
    assert path.stem.startswith(f"{config.model}-"), "configs are named model-dataset.yaml"
    dataset = config.dataset
    if dataset.startswith("imagefolder:"):  # the user's own folder: a small one stands in
        dataset = f"imagefolder:{request.getfixturevalue('image_folder')}"
    channels, side, _, num_classes = dataset_shape(dataset)
    with torch.device("meta"):
        model = create_model(config.model, num_classes=num_classes, in_channels=channels, image_size=side,
                             **config.model_kwargs)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_every_family_ships_a_config():
    families_with_config = {get_model_info(load_config(path).model).family for path in CONFIGS}
    all_families = {get_model_info(name).family for name in list_models()}
    assert all_families <= families_with_config


def test_convzoo_list_shows_every_model_with_family_paper_parameters_and_input(cli):
    exit_code, stdout, _ = cli("list", "--json")
    assert exit_code == 0
    rows = {row["name"]: row for row in json.loads(stdout)["models"]}
    assert list(rows) == list_models()  # every model, in the registry's natural order
    for name, row in rows.items():
        info = get_model_info(name)
        assert (row["family"], row["paper"], row["input_size"]) == (info.family, info.paper, list(info.input_size))
    assert rows["resnet50"]["params"] == meta_parameter_count("resnet50") == 25_557_032


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_shipped_config_trains_end_to_end_on_its_real_dataset(path, cli, data_dir, tmp_path):
    """Every family's recipe through `convzoo train` on real images: a short cut of the run.

    Two epochs on 128 training and 128 test images keep the whole recipe (its optimiser,
    schedule and warm-up, label smoothing, augmentation, small-input model) and cost seconds.
    """
    config = load_config(path)
    folder = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}.get(config.dataset)
    if folder is None:
        pytest.skip(f"{config.dataset} is not on this machine; its loader is tested on files the tests write")
    require_dataset(data_dir, folder)
    warmup = ["--set", "warmup_epochs=0.5"] if config.warmup_epochs else []
    weights = []
    if config.weights:  # a fine-tuning config: the run it starts from stands in as a file of its shape
        channels, side, _, num_classes = dataset_shape(config.dataset)
        weights = ["--weights", tmp_path / "pretrained.pt"]
        torch.save(create_model(config.model, num_classes=num_classes, in_channels=channels, image_size=side,
                                **config.model_kwargs).state_dict(), weights[1])
    code, out, err = cli("train", "--config", path, "--model", config.model, "--dataset", config.dataset,
                         "--data-dir", data_dir, "--epochs", "2", "--set", "train_size=128", "--set", "test_size=128",
                         "--set", "batch_size=64", *warmup, *weights, "--out", tmp_path, "--name", "run", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["epochs"] == 2 and 0 <= result["best_acc"] <= 1
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in records)
    assert (records[-1]["train_images"], records[-1]["test_images"]) == (128, 128)
    saved = torch.load(tmp_path / "run" / "best.pt", map_location="cpu", weights_only=True)
    assert saved["model_name"] == config.model and saved["config"]["lr"] == config.lr
