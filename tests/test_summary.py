"""``convzoo summary``: the lecture's classic tables reproduced, every registered model in
every format, comparisons, JSON, totals that are PyTorch's count, and one-line errors."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from torch import nn

from convzoo import summary as summary_module
from convzoo.errors import ConvzooError
from convzoo.registry import list_models
from convzoo.summary import (
    build_uninitialised,
    format_comparison,
    format_summary,
    format_torchsummary,
    summarize,
)

# The lecture notes' tables (000_fb8b8e2d808a8c1a.txt), printed by the classic torchsummary.
LENET5_TABLE = """\
----------------------------------------------------------------
        Layer (type)               Output Shape         Param #
================================================================
            Conv2d-1            [-1, 6, 28, 28]             156
              ReLU-2            [-1, 6, 28, 28]               0
         MaxPool2d-3            [-1, 6, 14, 14]               0
            Conv2d-4           [-1, 16, 10, 10]           2,416
              ReLU-5           [-1, 16, 10, 10]               0
         MaxPool2d-6             [-1, 16, 5, 5]               0
            Conv2d-7            [-1, 120, 1, 1]          48,120
              ReLU-8            [-1, 120, 1, 1]               0
            Linear-9                   [-1, 84]          10,164
             ReLU-10                   [-1, 84]               0
           Linear-11                   [-1, 10]             850
       LogSoftmax-12                   [-1, 10]               0
================================================================
Total params: 61,706
Trainable params: 61,706
Non-trainable params: 0
----------------------------------------------------------------
Input size (MB): 0.00
Forward/backward pass size (MB): 0.11
Params size (MB): 0.24
Estimated Total Size (MB): 0.35
----------------------------------------------------------------"""

ALEXNET_ROWS = """\
            Conv2d-1           [-1, 64, 55, 55]          23,296
              ReLU-2           [-1, 64, 55, 55]               0
         MaxPool2d-3           [-1, 64, 27, 27]               0
            Conv2d-4          [-1, 192, 27, 27]         307,392
              ReLU-5          [-1, 192, 27, 27]               0
         MaxPool2d-6          [-1, 192, 13, 13]               0
            Conv2d-7          [-1, 384, 13, 13]         663,936
              ReLU-8          [-1, 384, 13, 13]               0
            Conv2d-9          [-1, 256, 13, 13]         884,992
             ReLU-10          [-1, 256, 13, 13]               0
           Conv2d-11          [-1, 256, 13, 13]         590,080
             ReLU-12          [-1, 256, 13, 13]               0
        MaxPool2d-13            [-1, 256, 6, 6]               0
          Dropout-14                 [-1, 9216]               0
           Linear-15                 [-1, 4096]      37,752,832
             ReLU-16                 [-1, 4096]               0
          Dropout-17                 [-1, 4096]               0
           Linear-18                 [-1, 4096]      16,781,312
             ReLU-19                 [-1, 4096]               0
           Linear-20                 [-1, 1000]       4,097,000"""

VGG16_ROWS = """\
            Conv2d-1         [-1, 64, 224, 224]           1,792
              ReLU-2         [-1, 64, 224, 224]               0
            Conv2d-3         [-1, 64, 224, 224]          36,928
              ReLU-4         [-1, 64, 224, 224]               0
         MaxPool2d-5         [-1, 64, 112, 112]               0
            Conv2d-6        [-1, 128, 112, 112]          73,856
              ReLU-7        [-1, 128, 112, 112]               0
            Conv2d-8        [-1, 128, 112, 112]         147,584
              ReLU-9        [-1, 128, 112, 112]               0
        MaxPool2d-10          [-1, 128, 56, 56]               0
           Conv2d-11          [-1, 256, 56, 56]         295,168
             ReLU-12          [-1, 256, 56, 56]               0
           Conv2d-13          [-1, 256, 56, 56]         590,080
             ReLU-14          [-1, 256, 56, 56]               0
           Conv2d-15          [-1, 256, 56, 56]         590,080
             ReLU-16          [-1, 256, 56, 56]               0
        MaxPool2d-17          [-1, 256, 28, 28]               0
           Conv2d-18          [-1, 512, 28, 28]       1,180,160
             ReLU-19          [-1, 512, 28, 28]               0
           Conv2d-20          [-1, 512, 28, 28]       2,359,808
             ReLU-21          [-1, 512, 28, 28]               0
           Conv2d-22          [-1, 512, 28, 28]       2,359,808
             ReLU-23          [-1, 512, 28, 28]               0
        MaxPool2d-24          [-1, 512, 14, 14]               0
           Conv2d-25          [-1, 512, 14, 14]       2,359,808
             ReLU-26          [-1, 512, 14, 14]               0
           Conv2d-27          [-1, 512, 14, 14]       2,359,808
             ReLU-28          [-1, 512, 14, 14]               0
           Conv2d-29          [-1, 512, 14, 14]       2,359,808
             ReLU-30          [-1, 512, 14, 14]               0
        MaxPool2d-31            [-1, 512, 7, 7]               0
           Linear-32                 [-1, 4096]     102,764,544
             ReLU-33                 [-1, 4096]               0
          Dropout-34                 [-1, 4096]               0
           Linear-35                 [-1, 4096]      16,781,312
             ReLU-36                 [-1, 4096]               0
          Dropout-37                 [-1, 4096]               0
           Linear-38                 [-1, 1000]       4,097,000"""

# Totals of the lecture's four tables: params, input, forward/backward, params size, total (MB).
LECTURE_TOTALS = {
    "lenet5": ("61,706", "0.00", "0.11", "0.24", "0.35"),
    "alexnet": ("61,100,840", "0.57", "8.31", "233.08", "241.96"),
    "vgg16": ("138,357,544", "0.57", "218.59", "527.79", "746.96"),
    "resnet50": ("25,557,032", "0.57", "286.56", "97.49", "384.62"),
}


def table_rows(text: str) -> list[str]:
    lines = text.splitlines()
    return lines[3:lines.index("=" * 64, 3)]


# --------------------------------------------------------------------------- the classic format


def test_lenet5_torchsummary_is_the_lecture_table(cli):
    code, out, _ = cli("summary", "--model", "lenet5", "--format", "torchsummary")
    assert code == 0
    assert out.strip("\n") == LENET5_TABLE


@pytest.mark.parametrize("name, rows", [("alexnet", ALEXNET_ROWS), ("vgg16", VGG16_ROWS)])
def test_alexnet_and_vgg16_rows_are_the_lecture_rows(name, rows):
    # At 224x224 their adaptive average pool is the identity: no row, as in the lecture.
    assert table_rows(format_torchsummary(summarize(name))) == rows.splitlines()


@pytest.mark.parametrize("name", sorted(LECTURE_TOTALS))
def test_torchsummary_totals_match_the_lecture(name):
    params, input_mb, forward_backward_mb, params_mb, total_mb = LECTURE_TOTALS[name]
    rule = "-" * 64
    assert format_torchsummary(summarize(name)).splitlines()[-10:] == [
        "================================================================",
        f"Total params: {params}",
        f"Trainable params: {params}",
        "Non-trainable params: 0",
        rule,
        f"Input size (MB): {input_mb}",
        f"Forward/backward pass size (MB): {forward_backward_mb}",
        f"Params size (MB): {params_mb}",
        f"Estimated Total Size (MB): {total_mb}",
        rule,
    ]


def test_resnet50_torchsummary_has_the_lecture_rows():
    rows = table_rows(format_torchsummary(summarize("resnet50")))
    assert len(rows) == 174
    assert rows[0].split() == ["Conv2d-1", "[-1,", "64,", "112,", "112]", "9,408"]
    assert rows[15].split() == ["Bottleneck-16", "[-1,", "256,", "56,", "56]", "0"]
    assert rows[-2].split()[1:] == ["[-1,", "2048,", "1,", "1]", "0"]  # the lecture's AvgPool2d-173
    assert rows[-1].split() == ["Linear-174", "[-1,", "1000]", "2,049,000"]


def test_a_transposed_convolution_multiplies_its_kernel_once_per_input_position():
    upsampling = nn.Sequential(nn.ConvTranspose2d(3, 5, 4, stride=2, padding=1))
    result = summarize(upsampling, (3, 6, 7), batch_size=2)
    weights, bias = 3 * 5 * 4 * 4 * (6 * 7), 5 * (12 * 14)  # every input pixel scatters the kernel
    assert result.mult_adds == result.layers[-1].mult_adds == 2 * (weights + bias)


def test_batch_size_replaces_the_minus_one():
    text = format_torchsummary(summarize("lenet5", batch_size=8))
    assert "[8, 6, 28, 28]" in text and "Input size (MB): 0.03" in text


# --------------------------------------------------------------------------- every registered model


@pytest.fixture(scope="module")
def summaries() -> dict:
    return {}


def summary_of(cache: dict, name: str):
    if name not in cache:
        cache[name] = summarize(name)
    return cache[name]


@pytest.mark.parametrize("name", list_models())
def test_every_model_totals_equal_pytorch_count(summaries, name):
    result = summary_of(summaries, name)
    model = build_uninitialised(name)
    parameters = list(model.parameters())
    assert result.total_params == sum(p.numel() for p in parameters)
    assert result.trainable_params + result.non_trainable_params == result.total_params
    assert result.param_bytes == 4 * result.total_params
    assert result.mult_adds > 0 and result.weight_depth >= 2
    assert result.final_field is not None and result.final_field.is_known and not result.unsupported_ops


@pytest.mark.parametrize("name", list_models())
def test_every_model_renders_in_every_format(summaries, name):
    result = summary_of(summaries, name)
    table = format_summary(result, "table")
    assert f"Total params: {result.total_params:,}" in table and "Receptive Field" in table
    assert table_rows(format_torchsummary(result))
    markdown = format_summary(result, "markdown", ["output_shape", "params", "receptive_field", "jump", "start"])
    assert markdown.splitlines()[1].startswith("| :--- | ---: |")
    rows = list(csv.DictReader(io.StringIO(format_summary(result, "csv"))))
    assert len(rows) == len(result.visible_layers()) and rows[0]["receptive_field"]
    payload = json.loads(format_summary(result, "json"))
    assert payload["total_params"] == result.total_params and len(payload["layers"]) == len(rows)


def test_json_schema(cli):
    code, out, _ = cli("summary", "--model", "resnet18", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["total_params"] == payload["trainable_params"] == 11_689_512
    assert payload["input_size"] == [3, 224, 224] and payload["mult_adds"] > 1_000_000_000
    assert payload["weight_layers"] == 18 and payload["receptive_field"] == 435 and payload["jump"] == 32
    for layer in payload["layers"]:
        assert {"name", "type", "output_shape", "params", "kernel_size", "mult_adds", "receptive_field",
                "jump"} <= set(layer)
    conv1 = next(layer for layer in payload["layers"] if layer["name"] == "conv1")
    assert conv1 == {**conv1, "type": "Conv2d", "output_shape": [1, 64, 112, 112], "params": 9408,
                     "kernel_size": [7, 7], "mult_adds": 118_013_952, "receptive_field": 7, "jump": 2, "start": -3}
    assert payload["layers"][-1]["global"] and not conv1["global"]


def test_shown_parameters_add_up_to_the_total_at_every_depth():
    for depth in (0, 1, 2, 5):
        result = summarize("resnet50", depth=depth)
        assert sum(row.shown_params(depth) for row in result.visible_layers()) == result.total_params
        assert max(row.depth for row in result.visible_layers()) == min(depth, 4)


def test_shape_pass_agrees_with_the_meta_device(monkeypatch):
    # The CPU shape pass computes some shapes itself: torch's meta kernels are the reference.
    for name in ("alexnet_paper", "googlenet", "densenet121", "mobilenet_v2", "resnet20", "bagnet17"):
        if name not in list_models():
            continue
        fast = summarize(name)
        monkeypatch.setattr(summary_module, "SHAPE_PASS_PIXELS", 0)
        on_meta = summarize(name)
        monkeypatch.undo()
        assert [(row.name, row.output_shape, row.mult_adds, row.field) for row in fast.layers] == \
               [(row.name, row.output_shape, row.mult_adds, row.field) for row in on_meta.layers]
        assert (fast.forward_backward_bytes, fast.weight_depth) == (on_meta.forward_backward_bytes, on_meta.weight_depth)


# --------------------------------------------------------------------------- comparisons


def test_comparison_table_has_one_row_per_model(cli):
    code, out, _ = cli("summary", "-m", "vgg16", "-m", "resnet50", "-m", "densenet121", "--format", "markdown")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 5 and lines[0].startswith("| Model | Input | Params | Mult-Adds | Weight layers")
    assert lines[2].split("|")[1:8] == [" vgg16 ", " 3x224x224 ", " 138,357,544 ", " 15.48 G ", " 16 ", " 212 ",
                                        " 527.79 "]
    code, out, _ = cli("summary", "-m", "vgg16", "-m", "resnet50", "--json")
    models = json.loads(out)["models"]
    assert [(m["model"], m["weight_layers"], m["receptive_field"], m["size_mb"]) for m in models] == [
        ("vgg16", 16, 212, 527.79), ("resnet50", 50, 427, 97.49)]


def test_comparison_formats():
    results = [summarize("lenet5"), summarize("resnet20")]
    assert len(format_comparison(results, "table").splitlines()) == 2 + 4  # two rows, a header, three rules
    rows = list(csv.DictReader(io.StringIO(format_comparison(results, "csv"))))
    assert [row["model"] for row in rows] == ["lenet5", "resnet20"] and rows[0]["total_params"] == "61706"
    assert format_comparison(results, "torchsummary").count("Total params") == 2


# --------------------------------------------------------------------------- options


def test_train_mode_shows_googlenets_auxiliary_classifiers():
    def auxiliary_rows(result):
        return [row for row in result.layers if row.name.startswith("aux")]

    evaluation, training = summarize("googlenet"), summarize("googlenet", train_mode=True)
    assert not auxiliary_rows(evaluation) and auxiliary_rows(training)
    assert evaluation.total_params == training.total_params  # parameters counted whether or not they ran
    assert training.mult_adds > evaluation.mult_adds


def test_dataset_sizes_the_model_and_its_input():
    pytest.importorskip("convzoo.data")
    mnist = summarize("resnet20", dataset="mnist")
    assert mnist.input_size == (1, 28, 28) and mnist.layers[0].output_shape == [1, 10]
    assert summarize("lenet5", dataset="fashion-mnist").input_size == (1, 32, 32)  # padded, as in the paper


def test_scratch_convolution_gives_the_same_summary():
    pytest.importorskip("convzoo.ops")
    torch_conv, scratch = summarize("resnet20"), summarize("resnet20", conv="scratch")
    assert [(row.output_shape, row.params, row.field) for row in torch_conv.layers] == \
           [(row.output_shape, row.params, row.field) for row in scratch.layers]


def test_columns_select_what_is_shown():
    text = format_summary(summarize("lenet5"), "table", ["kernel_size,start", "trainable"])
    header = text.splitlines()[2].split()
    assert header == ["Layer", "Kernel", "Start", "Trainable"]


def test_shared_weights_are_counted_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(8, 8)
            self.decoder = nn.Linear(8, 8)
            self.decoder.weight = self.encoder.weight

        def forward(self, x):
            return self.decoder(self.encoder(x.flatten(1)))

    result = summarize(Tied(), (2, 2, 2))
    assert result.total_params == 8 * 8 + 8 + 8


def test_summarising_leaves_the_model_unchanged():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    model = model.double().train()
    model[1].eval()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    modes = [module.training for module in model.modules()]
    rng = torch.get_rng_state()
    cuda_was_initialised = torch.cuda.is_initialized()  # on a GPU machine earlier tests may have
    summarize(model, (3, 8, 8), train_mode=True, batch_size=4)
    assert [module.training for module in model.modules()] == modes
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    assert next(model.parameters()).dtype == torch.float64 and next(model.parameters()).device.type == "cpu"
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.cuda.is_initialized() == cuda_was_initialised, "summarising a CPU model initialised CUDA"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("args, expected", [
    (["--model", "resnet5"], "unknown model 'resnet5'"),
    (["--model", "alexnet", "--input-size", "1", "8", "8"], "it takes 3 input channels, the input has 1"),
    (["--model", "alexnet", "--input-size", "3", "8", "8"], "too small"),
    (["--model", "lenet5", "--format", "html"], "unknown format 'html'"),
    (["--model", "lenet5", "--columns", "colour"], "unknown column 'colour'"),
])
def test_bad_input_is_one_line_naming_the_problem(cli, args, expected):
    code, out, err = cli("summary", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err


def test_library_errors_are_convzoo_errors():
    with pytest.raises(ConvzooError, match="alexnet cannot take a 3x8x8 input at features"):
        summarize("alexnet", (3, 8, 8))
    with pytest.raises(ConvzooError, match="input_size"):
        summarize(nn.Conv2d(1, 1, 3))


def test_markdown_indents_with_entities_that_survive_rendering():
    markdown = format_summary(summarize("resnet20", (3, 32, 32), depth=2), "markdown")
    nested = [line for line in markdown.splitlines() if "(BasicBlock)" in line]
    assert nested and all(line.startswith("| &nbsp;&nbsp;") for line in nested)


def test_a_comparison_refuses_columns_rather_than_ignoring_them(cli):
    code, out, err = cli("summary", "-m", "lenet5", "-m", "resnet20", "--columns", "params")
    assert code != 0 and out == "" and "--columns chooses the columns of one model's layer table" in err


def test_the_title_says_which_build_of_the_model_it_is(cli):
    """VGG-16 at 32x32 is another network with --dataset cifar10 (the small-input VGG) than
    with --input-size 3 32 32 (the ImageNet one): the titles say which."""
    import json

    code, by_size, err = cli("summary", "-m", "vgg16", "--input-size", "3", "32", "32", "--depth", "1")
    assert code == 0, err
    code, by_dataset, err = cli("summary", "-m", "vgg16", "--dataset", "cifar10", "--depth", "1")
    assert code == 0, err
    assert "built for its default 3x224x224 images" in by_size.splitlines()[0]
    assert "built for cifar10: 3x32x32 images, 10 classes" in by_dataset.splitlines()[0]
    code, out, err = cli("summary", "-m", "vgg16", "--dataset", "cifar10", "--json")
    assert json.loads(out)["built_for"].startswith("cifar10")


def test_csv_gives_a_container_its_parameters(cli):
    import csv
    import io

    code, out, err = cli("summary", "-m", "resnet20", "--dataset", "cifar10", "--format", "csv", "--depth", "2")
    assert code == 0, err
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(out))}
    from convzoo.registry import create_model

    layer1 = create_model("resnet20", num_classes=10, image_size=32).layer1
    assert int(rows["layer1"]["params"]) == sum(p.numel() for p in layer1.parameters()) > 0


def test_torchsummary_format_takes_one_model(cli):
    code, out, err = cli("summary", "-m", "lenet5", "-m", "resnet20", "--format", "torchsummary")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "one model" in err
