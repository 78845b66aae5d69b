import pytest
import torch

import convzoo
from convzoo.errors import ConvzooError
from convzoo.model_catalog import catalog_rows, count_parameters, meta_parameter_count
from convzoo.registry import register_model


def test_list_models_accepts_shell_wildcards():
    assert "lenet5" in convzoo.list_models()
    assert convzoo.list_models("lenet*") == ["lenet5"]
    assert convzoo.list_models("le?et5") == ["lenet5"]
    assert convzoo.list_models("nothing-like-this*") == []
    from convzoo.registry import natural_key

    assert convzoo.list_models() == sorted(convzoo.list_models(), key=natural_key)  # resnet18 before resnet101


def test_unknown_model_names_the_closest_registered_ones():
    with pytest.raises(ConvzooError) as raised:
        convzoo.create_model("lenet")
    message = str(raised.value)
    assert "unknown model 'lenet'" in message and "lenet5" in message and "\n" not in message


def test_create_model_uses_the_papers_defaults_and_accepts_dataset_shapes():
    model = convzoo.create_model("lenet5")
    assert count_parameters(model) == 61_706  # LeCun et al. 1998, the lecture's table
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    three_channel = convzoo.create_model("lenet5", num_classes=100, in_channels=3)
    assert three_channel(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_meta_device_counts_match_real_counts():
    assert meta_parameter_count("lenet5") == count_parameters(convzoo.create_model("lenet5"))


def test_catalog_rows_describe_each_model():
    (row,) = catalog_rows("lenet5")
    recipe = row.pop("recipe")
    assert row == {"name": "lenet5", "family": "lenet", "task": "classification", "paper": "LeCun et al. 1998",
                   "params": 61_706, "input_size": [1, 32, 32], "num_classes": 10}
    (row,) = catalog_rows("fcn8s_vgg16")
    assert row["task"] == "segmentation" and row["family"] == "fcn"
    assert (recipe["lr"], recipe["batch_size"], recipe["optimizer"]) == (0.05, 128, "sgd")
    with pytest.raises(ConvzooError, match="no model matches"):
        catalog_rows("zzz*")


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        @register_model(family="lenet", paper="-")
        def lenet5(num_classes=10, in_channels=1, image_size=32):  # noqa: F811
            raise AssertionError


def test_list_sorts_numbers_as_numbers_and_ignores_case():
    from convzoo.registry import list_models

    assert list_models("bagnet*") == ["bagnet9", "bagnet17", "bagnet33"]
    resnets = list_models("resnet*")
    assert resnets.index("resnet18") < resnets.index("resnet20") < resnets.index("resnet101")
    assert list_models("VGG1?") == ["vgg11", "vgg13", "vgg16", "vgg19"]


@pytest.mark.parametrize("name", convzoo.list_models())
def test_declared_head_and_stem_are_the_layers_that_depend_on_classes_and_channels(name):
    """Fine-tuning re-initialises ``head`` for another class count and adapts ``stem`` for
    another channel count: they must be exactly the modules whose shapes change."""
    info = convzoo.get_model_info(name)

    def shapes(**kwargs):
        with torch.device("meta"):
            return {key: value.shape for key, value in convzoo.create_model(name, **kwargs).state_dict().items()}

    seven, eleven, two_channels = shapes(num_classes=7), shapes(num_classes=11), shapes(num_classes=7, in_channels=2)
    assert {key.rsplit(".", 1)[0] for key in seven if seven[key] != eleven[key]} == set(info.head)
    assert {key.rsplit(".", 1)[0] for key in seven if seven[key] != two_channels[key]} == {info.stem}
