"""TorchScript, ExportedProgram and safetensors round trips, dynamic batch, and every
way ``convzoo export`` refuses bad input with one line and a non-zero exit."""

from __future__ import annotations

import json
import os

import pytest
import torch

from convzoo.deploy import export_model
from convzoo.errors import ConvzooError
from convzoo.inspection import build_source_model, resolve_model_source


# torch.export of ResNet-20 takes 25 s on a busy 2-core machine; LeNet-5 covers ExportedProgram.
@pytest.mark.parametrize(("name", "fmt"), [("lenet5", "torchscript"), ("resnet20", "torchscript"),
                                           ("lenet5", "exported-program")])
def test_torch_formats_reload_and_match_eager(name, fmt, tmp_path):
    source = resolve_model_source(model=name, random_init=True)
    result = export_model(source, fmt, tmp_path / f"model.{fmt}")
    assert result.checked_batches == [1, 7] and result.max_abs_diff <= result.tolerance
    model = build_source_model(source)
    batch = torch.randn(3, *result.input_shape[1:])
    loaded = torch.jit.load(result.path) if fmt == "torchscript" else torch.export.load(result.path).module()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), model(batch), rtol=1e-5, atol=1e-5)


def test_onnx_dynamic_batch_takes_1_and_7_and_static_batch_only_1(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    source = resolve_model_source(model="resnet20", random_init=True)
    model = build_source_model(source)
    for dynamic, works in ((True, (1, 7)), (False, (1,))):
        path = tmp_path / f"dynamic-{dynamic}.onnx"
        export_model(source, "onnx", path, dynamic_batch=dynamic)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for batch_size in works:
            batch = torch.randn(batch_size, 3, 32, 32)
            with torch.no_grad():
                expected = model(batch)
            torch.testing.assert_close(torch.from_numpy(session.run(None, {"input": batch.numpy()})[0]), expected,
                                       rtol=1e-4, atol=1e-4)
        if not dynamic:
            with pytest.raises(Exception):
                session.run(None, {"input": torch.randn(7, 3, 32, 32).numpy()})


def test_onnx_file_carries_class_names_and_normalisation(synthetic_checkpoint, tmp_path):
    onnx = pytest.importorskip("onnx")
    result = export_model(resolve_model_source(checkpoint=synthetic_checkpoint), "onnx", tmp_path / "m.onnx")
    onnx.checker.check_model(result.path)
    metadata = {entry.key: entry.value for entry in onnx.load(result.path).metadata_props}
    assert metadata["model_name"] == "lenet5" and metadata["image_size"] == "32"
    assert json.loads(metadata["class_names"])[:2] == ["disk", "ring"]
    assert json.loads(metadata["mean"]) == [0.5]


def test_scratch_convolution_model_exports_as_standard_conv(tmp_path):
    source = resolve_model_source(model="lenet5", random_init=True, conv="scratch")
    result = export_model(source, "torchscript", tmp_path / "scratch.pt")
    assert result.max_abs_diff <= result.tolerance
    assert "scratch convolution" in result.notes[0]


def test_safetensors_round_trip_is_bit_identical_and_loads_with_weights(synthetic_checkpoint, tmp_path, cli):
    from safetensors.torch import load_file

    path = tmp_path / "lenet.safetensors"
    result = export_model(resolve_model_source(checkpoint=synthetic_checkpoint), "safetensors", path)
    assert result.max_abs_diff == 0.0
    original = torch.load(synthetic_checkpoint, weights_only=True)["model"]
    stored = load_file(str(path))  # plain safetensors, no convzoo code, no pickle
    assert stored.keys() == original.keys()
    assert all(torch.equal(stored[key], original[key]) for key in original)
    rebuilt = resolve_model_source(weights=str(path))  # no --model: the metadata names it
    assert rebuilt.model_name == "lenet5" and rebuilt.class_names[:2] == ("disk", "ring")
    code, out, err = cli("predict", "--weights", path, "--dataset", "synthetic", "--index", "0", "--top-k", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["predictions"][0]["top_k"][0]["name"] in rebuilt.class_names
    # train --weights FILE.safetensors starts from those weights
    code, out, err = cli("train", "--model", "lenet5", "--weights", path, "--epochs", "1", "--set", "train_size=64", "--batch-size", "32",
                         "--out", tmp_path, "--name", "fine-tune", "--json")
    assert code == 0, err


def test_safetensors_without_metadata_needs_model(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    model = build_source_model(resolve_model_source(model="lenet5", random_init=True))
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    with pytest.raises(ConvzooError, match="--model"):
        resolve_model_source(weights=str(path))
    assert resolve_model_source(model="lenet5", weights=str(path)).model_name == "lenet5"


def test_export_errors_are_one_line(synthetic_checkpoint, tmp_path, cli):
    not_ours = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, not_ours)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    cases = [
        (["--format", "tflite"], "unknown export format"),
        (["--format", "onnx", "--out", tmp_path / "missing" / "m.onnx"], "does not exist"),
        (["--checkpoint", not_ours, "--format", "onnx"], "not a convzoo checkpoint"),
    ]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((["--format", "torchscript", "--out", read_only / "m.pt"], "read-only"))
    for options, message in cases:
        arguments = options if "--checkpoint" in options else ["--checkpoint", synthetic_checkpoint, *options]
        code, out, err = cli("export", *arguments)
        assert code != 0 and message in err, (options, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_onnx_without_the_extra_names_the_install_command(synthetic_checkpoint, tmp_path, cli, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnxruntime" else real_find_spec(name, *args))
    code, out, err = cli("export", "--checkpoint", synthetic_checkpoint, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert code != 0 and 'pip install -e ".[export]"' in err
