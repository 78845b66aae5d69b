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
def test_every_shipped_config_is_valid_and_names_a_registered_model(path, image_folder):
    import convzoo
    from convzoo.data import get_dataset_spec

    config = load_config(path)
    assert config.model in convzoo.list_models()
    # An image folder is the user's own (its config names a placeholder): a small one stands in.
    own_folder = config.dataset.startswith("imagefolder:")
    get_dataset_spec(f"imagefolder:{image_folder}" if own_folder else config.dataset)
    model, dataset = path.stem.split("-", 1)
    # MODEL-DATASET.yaml; a fine-tuning config MODEL-finetune-DATASET.yaml (DATASET 'imagefolder'
    # for your own, or the folder's name), a variant's MODEL-DATASET-VARIANT.yaml
    dataset = dataset.removeprefix("finetune-" if config.weights else "").removesuffix("-modern")
    named = config.dataset.rsplit("/", 1)[-1] if own_folder else config.dataset
    assert config.model == model and dataset in (named, "imagefolder" if own_folder else named), \
        "configs are named MODEL-DATASET.yaml, fine-tuning ones MODEL-finetune-DATASET.yaml"


def test_set_options_read_values_as_yaml():
    from convzoo.config import parse_set_options

    values = parse_set_options(["warmup_epochs=0", "augment=false", "lr=0.5", "model_kwargs={width_mult: 0.5}",
                                "name=a=b"])
    assert values == {"warmup_epochs": 0, "augment": False, "lr": 0.5, "model_kwargs": {"width_mult": 0.5},
                      "name": "a=b"}
    assert parse_set_options(None) == {}
    assert load_config(None, parse_set_options(["lr=3e-4", "weight_decay=5E-5"])).lr == 3e-4


def test_exponent_without_a_dot_is_a_number_in_yaml_files_too(tmp_path):
    # PyYAML follows YAML 1.1, where 3e-4 is the string '3e-4'.
    config = load_config(write(tmp_path, "lr: 3e-4\nweight_decay: 1e-5\n"))
    assert (config.lr, config.weight_decay) == (3e-4, 1e-5)
    with pytest.raises(ConvzooError, match="'lr' must be float"):
        load_config(write(tmp_path, "lr: 3e-4x\n"))


@pytest.mark.parametrize(
    ("assignment", "fragment"),
    [("warmup_epochs", "expects KEY=VALUE"), ("=3", "expects KEY=VALUE"), ("lr=[1", "not a valid YAML value"),
     ("grad_clip=null", "needs a value"), ("grad_clip=", "needs a value")],
)
def test_bad_set_options_are_one_line_errors(assignment, fragment):
    from convzoo.config import parse_set_options

    with pytest.raises(ConvzooError, match=fragment.replace("[", r"\[")):
        parse_set_options([assignment])


def test_warmup_longer_than_training_says_how_to_shorten_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\nwarmup_epochs: 1\n")
    with pytest.raises(ConvzooError, match="--set warmup_epochs=N"):
        load_config(path, {"epochs": 1, "warmup_epochs": 2}, {"warmup_epochs": "--set warmup_epochs"})
    assert load_config(path, {"epochs": 1, "warmup_epochs": 0}).warmup_epochs == 0


def test_shortening_epochs_scales_the_files_warmup_and_says_so(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 15\nwarmup_epochs: 2\n")
    config = load_config(path, {"epochs": 1}, {"epochs": "--epochs"})
    assert config.warmup_epochs == pytest.approx(2 / 15, abs=1e-3)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"{path}: warmup_epochs 2 scaled to 0.133 for --epochs 1")
    assert load_config(path, {"epochs": 5}).warmup_epochs == 2  # still shorter than the run: untouched


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_can_be_shortened_to_one_epoch(path):
    config = load_config(path, {"epochs": 1}, {"epochs": "--epochs"})
    assert config.epochs == 1 and config.warmup_epochs < 1


def test_a_too_long_warmup_set_by_a_flag_names_the_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 15\nwarmup_epochs: 1\n")
    with pytest.raises(ConvzooError) as raised:
        load_config(path, {"epochs": 2, "warmup_epochs": 3}, {"epochs": "--epochs", "warmup_epochs": "--set warmup_epochs"})
    message = str(raised.value)
    assert message.startswith("--set warmup_epochs (3.0) must be shorter than the run's 2 epochs (--epochs)")
    assert "config:" not in message


def test_a_bad_flag_value_names_the_flag_not_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 15\n")
    with pytest.raises(ConvzooError, match=r"^--batch-size must be at least 1, got 0\.$"):
        load_config(path, {"batch_size": 0}, {"batch_size": "--batch-size"})
