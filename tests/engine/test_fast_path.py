"""The fast path: channels-last and compiled models compute what the default does, still
train, checkpoint the plain model; fused optimiser steps on CUDA only; bad settings are one line."""

from __future__ import annotations

import json

import pytest
import torch

from convzoo.config import TrainConfig
from convzoo.engine import fast_path
from convzoo.engine.checkpoint import load_checkpoint
from convzoo.engine.optim import build_optimizer, load_optimizer_state
from convzoo.engine.train import train
from convzoo.errors import ConvzooError
from convzoo.registry import create_model, get_model_info, list_models


def small_config(tmp_path, **changes) -> TrainConfig:
    values = dict(model="lenet5", dataset="synthetic", epochs=1, batch_size=32, train_size=512, test_size=256,
                  lr=0.05, schedule="constant", out=str(tmp_path / "runs"), name="run", seed=3, device="cpu")
    values.update(changes)
    return TrainConfig(**values)


def test_an_explicit_choice_wins_and_cuda_always_gets_channels_last():
    assert fast_path.use_channels_last("resnet20", "cpu", requested=False) is False
    assert fast_path.use_channels_last("resnet20", "cpu", requested=True) is True
    assert fast_path.use_channels_last("lenet5", "cuda") is True
    assert fast_path.use_channels_last("lenet5", "mps") is False


def test_cpu_default_follows_the_measured_table(monkeypatch):
    monkeypatch.setattr(fast_path, "CPU_CHANNELS_LAST_SPEEDUP", {"resnet20": 1.4, "resnet18": 0.9, "vgg11_bn": 1.0})
    assert fast_path.use_channels_last("resnet20", "cpu") is True
    assert fast_path.use_channels_last("resnet18", "cpu") is False
    assert fast_path.use_channels_last("resnet50", "cpu") is False  # unmeasured: its family's lowest ratio
    assert fast_path.use_channels_last("vgg11_bn", "cpu") is False
    assert fast_path.use_channels_last("densenet121", "cpu") is False  # no measurement in its family: NCHW
    monkeypatch.setattr(fast_path, "CPU_CHANNELS_LAST_SCRATCH_SPEEDUP", {"resnet20": 0.8})
    assert fast_path.use_channels_last("resnet20", "cpu", conv="scratch") is False
    assert fast_path.use_channels_last("mobilenet_v2", "cpu", conv="scratch") is False  # unmeasured: NCHW


def test_the_shipped_table_never_picks_a_layout_measured_slower():
    for name, ratio in fast_path.CPU_CHANNELS_LAST_SPEEDUP.items():
        assert fast_path.use_channels_last(name, "cpu") is (ratio >= fast_path.CHANNELS_LAST_THRESHOLD)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "googlenet"])
def test_channels_last_gives_the_default_logits_and_the_same_state_dict(name, one_thread):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, image_size=32).eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)
    plain_state = {key: value.clone() for key, value in model.state_dict().items()}
    fast_path.to_memory_format(model, True)
    assert model.state_dict().keys() == plain_state.keys()
    assert all(torch.equal(model.state_dict()[key], value) for key, value in plain_state.items())
    with torch.no_grad():
        logits = model(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_a_channels_last_run_learns_and_checkpoints_weights_that_load_anywhere(tmp_path, one_thread):
    result = train(small_config(tmp_path, channels_last=True, epochs=2, train_size=1024), quiet=True)
    lines = [json.loads(line) for line in (tmp_path / "runs" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    state = load_checkpoint(result["run_dir"] + "/last.pt")["model"]
    plain = create_model("lenet5", num_classes=10)
    plain.load_state_dict(state, strict=True)  # an NCHW model takes the weights as they are


class Interrupted(Exception):
    pass


def test_a_channels_last_cpu_run_resumes_bit_identically(tmp_path, monkeypatch, one_thread):
    """With 3-channel images and batch norm (ResNet-20), where channels-last changes every
    convolution's memory layout: a run killed after epoch 1 and resumed ends with the
    weights of an uninterrupted run, bit for bit."""
    import convzoo.engine.train as engine

    config = dict(model="resnet20", channels_last=True, epochs=2, train_size=128, test_size=64,
                  schedule="cosine", lr=0.05)
    straight = train(small_config(tmp_path, name="split-free", **config), quiet=True)
    log_epoch = engine.RunLogger.log_epoch

    def die_before_epoch_two_is_saved(logger, record):
        if record["epoch"] == 2:
            raise Interrupted
        log_epoch(logger, record)

    with monkeypatch.context() as patch:
        patch.setattr(engine.RunLogger, "log_epoch", die_before_epoch_two_is_saved)
        with pytest.raises(Interrupted):
            train(small_config(tmp_path, name="split", **config), quiet=True)
    assert load_checkpoint(tmp_path / "runs" / "split" / "last.pt")["epoch"] == 1
    resumed = train(None, resume=tmp_path / "runs" / "split", quiet=True)
    weights_straight = load_checkpoint(straight["run_dir"] + "/last.pt")["model"]
    weights_resumed = load_checkpoint(resumed["run_dir"] + "/last.pt")["model"]
    assert all(torch.equal(weights_straight[key], weights_resumed[key]) for key in weights_straight)


def test_channels_last_and_compile_are_not_run_defining(tmp_path, one_thread):
    """A run may resume with another layout or with compilation: they change only speed."""
    from convzoo.engine.train import resume_config

    train(small_config(tmp_path, channels_last=False, train_size=128), quiet=True)
    config, _ = resume_config(tmp_path / "runs" / "run", {"channels_last": True, "compile": True,
                                                          "compile_mode": "max-autotune"})
    assert config.channels_last and config.compile and config.compile_mode == "max-autotune"


def test_bad_compile_mode_is_one_line(cli, tmp_path):
    code, _, err = cli("train", "--model", "lenet5", "--compile-mode", "fastest", "--out", tmp_path)
    assert code != 0
    assert err.strip().count("\n") == 0 and "--compile-mode" in err
    assert "max-autotune" in err and "Traceback" not in err


def test_compile_without_a_cxx_compiler_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(fast_path.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ConvzooError, match="C\\+\\+ compiler"):
        fast_path.compile_model(torch.nn.Linear(2, 2), "cpu")


def test_cpu_optimizers_keep_torchs_default_implementation():
    model = create_model("lenet5", num_classes=10)
    for optimizer in ("sgd", "adamw"):
        built = build_optimizer(model, TrainConfig(optimizer=optimizer))
        assert not built.defaults.get("fused")


def test_fused_steps_are_asked_for_exactly_when_every_parameter_is_on_cuda():
    class CudaParameter:  # stands in for a CUDA tensor on a machine without one
        is_cuda = True

        def is_floating_point(self) -> bool:
            return True

    for optimizer in (torch.optim.SGD, torch.optim.AdamW):
        assert fast_path.fused_optimizer_kwargs([CudaParameter(), CudaParameter()], optimizer) == {"fused": True}
        assert fast_path.fused_optimizer_kwargs([CudaParameter(), torch.zeros(2)], optimizer) == {}
    assert fast_path.fused_optimizer_kwargs([], torch.optim.SGD) == {}


def trained_optimizer_state(optimizer_name: str) -> dict:
    """The optimiser state of a CPU run after one step: AdamW's step counts are CPU tensors."""
    model = create_model("lenet5", num_classes=10)
    optimizer = build_optimizer(model, TrainConfig(optimizer=optimizer_name))
    torch.nn.functional.cross_entropy(model(torch.randn(4, 1, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()
    return optimizer.state_dict()


@pytest.mark.parametrize("optimizer_name", ["sgd", "adamw"])
def test_a_cpu_runs_optimiser_state_moves_to_the_device_of_a_fused_resume(optimizer_name):
    """A CPU run resumed on CUDA switches to fused steps, whose kernels need every state
    tensor (AdamW's ``step`` too, in float32) on the parameters' device. With no GPU here,
    the meta device stands in for CUDA and ``fused`` is asked for as CUDA would ask for it."""
    saved = trained_optimizer_state(optimizer_name)
    elsewhere = create_model("lenet5", num_classes=10).to("meta")
    optimizer = build_optimizer(elsewhere, TrainConfig(optimizer=optimizer_name))
    optimizer.defaults["fused"] = True  # what fused_optimizer_kwargs gives when the parameters are on CUDA
    load_optimizer_state(optimizer, saved)
    states = [optimizer.state[parameter] for group in optimizer.param_groups for parameter in group["params"]]
    assert states and all(group["fused"] for group in optimizer.param_groups)
    for parameter, state in zip((p for group in optimizer.param_groups for p in group["params"]), states):
        assert {key: value.device.type for key, value in state.items()} == {key: "meta" for key in state}
    if optimizer_name == "adamw":
        assert all(state["step"].dtype == torch.float32 for state in states)


def test_an_optimiser_state_from_a_fused_device_resumes_with_cpu_steps():
    """The other way: a state whose groups were fused (a CUDA run's, mapped to the CPU as
    checkpoints are loaded), resumed where the steps are not, takes a step there."""
    saved = trained_optimizer_state("adamw")
    for group in saved["param_groups"]:
        group["fused"] = True
    model = create_model("lenet5", num_classes=10)
    optimizer = build_optimizer(model, TrainConfig(optimizer="adamw"))
    load_optimizer_state(optimizer, saved)
    assert not any(group["fused"] for group in optimizer.param_groups)
    assert all(value.device.type == "cpu" for state in optimizer.state.values() for value in state.values())
    torch.nn.functional.cross_entropy(model(torch.randn(4, 1, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()
    assert all(state["step"].item() == 2 for state in optimizer.state.values())


class StoppedAfterEpoch(Exception):
    pass


@pytest.mark.cuda
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_cpu_run_resumes_on_cuda_and_back(tmp_path, monkeypatch, optimizer):
    """The real case of the emulations above: a CPU run stopped after epoch 1 continues on
    CUDA with fused steps, is stopped after epoch 2, and ends on the CPU."""
    import convzoo.engine.train as engine

    save = engine.atomic_save

    def save_then_stop(state, path):
        save(state, path)
        if path.name == "last.pt" and state["epoch"] in (1, 2) and not state["step"]:
            raise StoppedAfterEpoch

    monkeypatch.setattr(engine, "atomic_save", save_then_stop)
    run_dir = tmp_path / "runs" / "run"
    with pytest.raises(StoppedAfterEpoch):
        train(small_config(tmp_path, optimizer=optimizer, epochs=3, train_size=64, test_size=32), quiet=True)
    with pytest.raises(StoppedAfterEpoch):
        train(None, resume=run_dir, overrides={"device": "cuda"}, quiet=True)
    monkeypatch.setattr(engine, "atomic_save", save)
    result = train(None, resume=run_dir, overrides={"device": "cpu"}, quiet=True)
    assert result["complete"] and load_checkpoint(run_dir / "last.pt")["epoch"] == 3


@pytest.mark.cuda
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_cuda_optimizers_are_fused(optimizer):
    model = create_model("resnet20", num_classes=10).cuda()
    built = build_optimizer(model, TrainConfig(optimizer=optimizer))
    assert built.defaults["fused"] is True
    images = torch.randn(4, 3, 32, 32, device="cuda")
    torch.nn.functional.cross_entropy(model(images), torch.zeros(4, dtype=torch.long, device="cuda")).backward()
    built.step()  # a fused step runs


@pytest.mark.slow
def test_a_compiled_run_learns_checkpoints_the_plain_model_and_computes_the_eager_logits(tmp_path, one_thread, capsys):
    """One inductor compile of LeNet-5's training forward (and its backward): the run logs
    its first step's time, its loss falls, and its checkpoint holds the plain module's keys
    (no ``_orig_mod.`` prefix). The compiled forward then gives the eager logits."""
    result = train(small_config(tmp_path, compile=True, epochs=2, train_size=512, batch_size=64),
                   progress_bars=False, step_lines=False)
    assert "torch.compile: first step took" in capsys.readouterr().err
    lines = [json.loads(line) for line in (tmp_path / "runs" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    state = load_checkpoint(result["run_dir"] + "/last.pt")["model"]
    assert not any(key.startswith("_orig_mod.") for key in state)
    model = create_model("lenet5", num_classes=10)
    model.load_state_dict(state, strict=True)
    images = torch.randn(64, 1, 32, 32)  # the run's batch shape, in training mode: its compiled graph is reused
    torch.testing.assert_close(fast_path.compile_model(model, "cpu")(images), model(images), rtol=1e-4, atol=1e-4)


def test_eval_and_probe_pass_compile_and_layout_through(cli, tmp_path, monkeypatch, one_thread):
    """``--compile --compile-mode M`` and ``--no-channels-last`` reach the model of eval and
    probe (the compile itself is the slow test's; here a spy stands in for it)."""
    calls = []

    def spy(model, device, mode=None, report_first_step=None):
        second_conv = [parameter for parameter in model.parameters() if parameter.ndim == 4][1]
        calls.append((mode, second_conv.is_contiguous(memory_format=torch.channels_last)))
        return model

    monkeypatch.setattr(fast_path, "compile_model", spy)
    result = train(small_config(tmp_path, train_size=64, test_size=64), quiet=True)
    checkpoint = result["run_dir"] + "/last.pt"
    code, _, err = cli("eval", "--checkpoint", checkpoint, "--device", "cpu", "--compile-mode", "max-autotune",
                       "--no-channels-last", "--json")
    assert code == 0, err
    code, _, err = cli("probe", "--checkpoint", checkpoint, "--epochs", "1", "--train-size", "64", "--batch-size", "32", "--compile",
                       "--channels-last", "--layers", "features.4", "--device", "cpu", "--out", tmp_path / "runs",
                       "--name", "p", "--json")
    assert code == 0, err
    assert calls == [("max-autotune", False), (None, True)]


def test_a_state_saved_with_fused_steps_resumes_with_this_devices_implementation():
    """A checkpoint from CUDA (fused SGD) resumed on CPU keeps CPU's default steps."""
    from convzoo.engine.optim import load_optimizer_state

    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    weight.grad = torch.ones(3)
    optimizer.step()
    saved = optimizer.state_dict()
    saved["param_groups"][0]["fused"] = True  # as written by a CUDA run
    resumed = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    load_optimizer_state(resumed, saved)
    assert not resumed.param_groups[0]["fused"]
    assert torch.equal(resumed.state[weight]["momentum_buffer"], optimizer.state[weight]["momentum_buffer"])
    resumed.step()  # CPU steps still work


def _inputs_not_channels_last(model: torch.nn.Module, images: torch.Tensor) -> list[str]:
    """Names of the layers that received a 4-d input in another memory layout."""
    found: list[str] = []

    def check(name: str):
        def hook(module, inputs, output):
            for tensor in inputs:
                # One channel or one pixel is both layouts at once: nothing to reorder.
                if isinstance(tensor, torch.Tensor) and tensor.dim() == 4 and tensor.shape[1] > 1 \
                        and tensor.shape[2] * tensor.shape[3] > 1 \
                        and not tensor.is_contiguous(memory_format=torch.channels_last):
                    found.append(name)
        return hook

    handles = [module.register_forward_hook(check(name)) for name, module in model.named_modules()
               if not list(module.children())]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return found


# A detector batches its list of images into a fresh NCHW tensor itself (GeneralizedRCNNTransform).
@pytest.mark.parametrize("name", [name for name in list_models() if get_model_info(name).task == "classification"])
def test_channels_last_stays_channels_last_through_every_layer(name, one_thread):
    """A layer that hands on an NCHW tensor makes oneDNN reorder every layer after it, and
    the measured speed-up (``CPU_CHANNELS_LAST_SPEEDUP``) would silently shrink."""
    info = get_model_info(name)
    channels, side = info.input_size[0], info.input_size[1] if info.fixed_input_size else 32
    model = fast_path.to_memory_format(
        create_model(name, num_classes=10, in_channels=channels, image_size=side).eval(), True)
    images = torch.randn(1, channels, side, side).contiguous(memory_format=torch.channels_last)
    assert _inputs_not_channels_last(model, images) == []


def test_the_layout_check_finds_a_layer_that_hands_on_nchw():
    class Contiguous(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.contiguous()

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), Contiguous(), torch.nn.Conv2d(4, 4, 3)).to(
        memory_format=torch.channels_last)
    images = torch.randn(1, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    assert _inputs_not_channels_last(model, images) == ["2"]
