from pathlib import Path

import pytest

from convzoo.config import TrainConfig, config_from_dict, load_config
from convzoo.errors import ConvzooError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    return path


def test_flags_override_the_yaml_file(tmp_path):
    path = write(tmp_path, "model: lenet5\nepochs: 7\nlr: 0.2\n")
    config = load_config(path, {"epochs": 3, "lr": None})
    assert config.epochs == 3  # the flag wins
    assert config.lr == 0.2  # an unset flag (None) leaves the file's value
    assert config.batch_size == TrainConfig().batch_size


def test_unknown_key_names_the_key_the_file_and_a_suggestion(tmp_path):
    path = write(tmp_path, "epoch: 3\n")
    with pytest.raises(ConvzooError) as raised:
        load_config(path)
    message = str(raised.value)
    assert str(path) in message and "'epoch'" in message and "'epochs'" in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("epochs: three\n", "'epochs' must be int"),
        ("lr: fast\n", "'lr' must be float"),
        ("nesterov: 1\n", "'nesterov' must be bool"),
        ("optimizer: adam\n", "'optimizer' must be one of sgd, adamw"),
        ("schedule: linear\n", "'schedule' must be one of"),
        ("epochs: 0\n", "'epochs' must be at least 1"),
        ("lr: -1\n", "'lr' must not be negative"),
        ("label_smoothing: 1.5\n", "'label_smoothing' must be in [0, 1)"),
        ("epochs: 2\nwarmup_epochs: 3\n", "'warmup_epochs'"),
        ("model_kwargs: 3\n", "'model_kwargs' must be dict"),
        ("- a list\n", "expected a mapping"),
        ("epochs: [1\n", "not valid YAML"),
    ],
)
def test_bad_values_are_one_line_errors_naming_key_and_file(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConvzooError) as raised:
        load_config(path)
    assert fragment in str(raised.value)
    assert str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConvzooError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")


def test_integers_are_accepted_for_float_keys():
    assert config_from_dict({"lr": 1}).lr == 1.0


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "model: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConvzooError, match="not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid_and_names_a_registered_model(path):
    import convzoo
    from convzoo.data import get_dataset_spec

    config = load_config(path)
    assert config.model in convzoo.list_models()
    get_dataset_spec(config.dataset)
    model, dataset = path.stem.split("-", 1)
    assert (config.model, config.dataset) == (model, dataset), "configs are named MODEL-DATASET.yaml"
