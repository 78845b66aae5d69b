"""The training engine on small synthetic runs: learning, resume, checkpoints, failures."""

import json
import math

import pytest
import torch

from convzoo.config import TrainConfig
from convzoo.engine.checkpoint import load_checkpoint
from convzoo.engine.train import train
from convzoo.errors import ConvzooError


def small_config(tmp_path, **changes) -> TrainConfig:
    """A LeNet-5 run of seconds, pinned to the CPU (where runs are bit-identical) on any machine."""
    values = dict(model="lenet5", dataset="synthetic", epochs=2, batch_size=32, train_size=512,
                  lr=0.05, out=str(tmp_path / "runs"), name="run", seed=3, device="cpu")
    values.update(changes)
    return TrainConfig(**values)


def initial_test_loss(config: TrainConfig) -> float:
    """The test loss of the model exactly as ``train`` initialises it (same seed)."""
    from convzoo.tasks.classification import evaluate
    from convzoo.engine.setup import build_model, dataset_spec_for, loaders_for

    torch.manual_seed(config.seed)
    spec, pad_to = dataset_spec_for(config)
    loaders = loaders_for(config, spec, pad_to, torch.device("cpu"))
    model = build_model(config.model, spec, loaders.image_size)
    return evaluate(model, loaders.test, torch.device("cpu"), num_classes=spec.num_classes)["loss"]


def test_one_epoch_on_synthetic_lowers_the_loss(tmp_path):
    config = small_config(tmp_path, epochs=1, train_size=4096, schedule="constant", lr=0.03)
    before = initial_test_loss(config)
    result = train(config, quiet=True)
    run_dir = tmp_path / "runs" / "run"
    (record,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert record["test_loss"] < before - 0.1
    assert result["best_acc"] > 0.2 and 0 <= result["final_acc"] <= 1
    for name in ("config.yaml", "last.pt", "best.pt"):
        assert (run_dir / name).is_file()
    assert any(path.name.startswith("events.out.tfevents") for path in run_dir.iterdir())


def test_the_saved_config_reproduces_the_run(tmp_path):
    from convzoo.config import load_config

    config = small_config(tmp_path, epochs=1)
    train(config, quiet=True)
    saved = load_config(tmp_path / "runs" / "run" / "config.yaml")
    assert saved == config


def test_seeded_cpu_runs_are_reproducible(tmp_path):
    first = train(small_config(tmp_path, name="a"), quiet=True)
    second = train(small_config(tmp_path, name="b"), quiet=True)
    weights_a = load_checkpoint(first["run_dir"] + "/last.pt")["model"]
    weights_b = load_checkpoint(second["run_dir"] + "/last.pt")["model"]
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


class Interrupted(Exception):
    pass


def test_resuming_gives_bit_identical_weights(tmp_path, monkeypatch):
    import convzoo.engine.train as engine

    straight = train(small_config(tmp_path, name="straight"), quiet=True)
    # The same two-epoch run, killed right after epoch 1's checkpoint, then resumed.
    save = engine.atomic_save

    def save_then_die(state, path):
        save(state, path)
        if str(path).endswith("last.pt") and state["epoch"] == 1:
            raise Interrupted

    monkeypatch.setattr(engine, "atomic_save", save_then_die)
    with pytest.raises(Interrupted):
        train(small_config(tmp_path, name="split"), quiet=True)
    monkeypatch.setattr(engine, "atomic_save", save)
    assert load_checkpoint(tmp_path / "runs" / "split" / "last.pt")["epoch"] == 1

    resumed = train(None, resume=tmp_path / "runs" / "split", quiet=True)
    assert resumed["epochs"] == 2
    weights_straight = load_checkpoint(straight["run_dir"] + "/last.pt")["model"]
    weights_resumed = load_checkpoint(resumed["run_dir"] + "/last.pt")["model"]
    for key in weights_straight:
        assert torch.equal(weights_straight[key], weights_resumed[key]), key
    lines = (tmp_path / "runs" / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def stop_after_first_epoch(config: TrainConfig, monkeypatch) -> None:
    """Run ``config`` until epoch 1's last.pt is written, then die as a killed run would."""
    import convzoo.engine.train as engine

    save = engine.atomic_save

    def save_then_die(state, path):
        save(state, path)
        if str(path).endswith("last.pt") and state["epoch"] == 1:
            raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(engine, "atomic_save", save_then_die)
        with pytest.raises(Interrupted):
            train(config, quiet=True)


def test_resuming_needs_no_generator_state_from_the_machine_that_saved(tmp_path, monkeypatch):
    """Checkpoints used to carry every visible GPU's generator state; restoring eight of them
    where one GPU is visible raised IndexError (simulated here: a CUDA that checks the device
    index). Each epoch's draws now follow from (seed, epoch, rank), so none are restored."""
    config = small_config(tmp_path, train_size=128)
    stop_after_first_epoch(config, monkeypatch)
    last = tmp_path / "runs" / "run" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["rng"] = {"torch": torch.get_rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8)] * 8}
    torch.save(state, last)

    def set_rng_state(new_state, device="cuda"):
        index = device if isinstance(device, int) else torch.device(device).index or 0
        if index >= torch.cuda.device_count():
            raise IndexError(f"CUDA device {index} is not visible")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)
    assert train(None, resume=tmp_path / "runs" / "run", quiet=True)["epochs"] == 2


def test_ranks_draw_their_own_random_numbers_from_identical_initial_weights(tmp_path, monkeypatch):
    """Dropout masks (and any other draw) must differ between ranks, or every replica drops
    the same units for the same batch; the initial weights must not (DDP replicas start equal)."""
    import convzoo.engine.train as engine
    import convzoo.tasks.classification as classification
    from convzoo.engine.runtime import Runtime

    seen: dict[str, list] = {"weights": [], "generator": []}
    build_model = engine.build_model

    def build_and_keep(*args, **kwargs):
        model = build_model(*args, **kwargs)
        seen["weights"].append({key: value.clone() for key, value in model.state_dict().items()})
        return model

    def loss_and_keep(*args, **kwargs):
        seen["generator"].append(torch.get_rng_state())
        return training_loss(*args, **kwargs)

    training_loss = classification.training_loss
    monkeypatch.setattr(engine, "build_model", build_and_keep)
    monkeypatch.setattr(classification, "training_loss", loss_and_keep)
    config = small_config(tmp_path, epochs=1, train_size=64)
    for rank in (0, 1):  # the rank as torchrun would set it; one process, no process group
        engine._train(config, tmp_path / f"rank{rank}", None, Runtime(torch.device("cpu"), rank=rank),
                      quiet=True, progress_bars=False)
    steps = len(seen["generator"]) // 2
    weights_rank0, weights_rank1 = seen["weights"]
    assert all(torch.equal(weights_rank0[key], weights_rank1[key]) for key in weights_rank0)
    assert not any(torch.equal(a, b) for a, b in zip(seen["generator"][:steps], seen["generator"][steps:]))


def test_a_schedule_rebuilt_for_another_number_of_processes_continues_from_its_epoch():
    """One process takes 8 steps per epoch, two take 4 each: a run resumed after epoch 1 with
    the other count must take the learning rate the schedule has at epoch 1 and end the
    schedule exactly at its last step (one-cycle raises past it; a cosine would stop short of 0)."""
    from convzoo.engine.optim import build_scheduler

    for schedule in ("onecycle", "cosine"):
        config = TrainConfig(epochs=3, schedule=schedule, lr=0.1, warmup_epochs=0.5)
        for saved_steps, steps in ((8, 4), (4, 8)):
            parameter = torch.nn.Parameter(torch.zeros(1))
            optimizer = torch.optim.SGD([parameter], lr=0.1, momentum=0.9)
            scheduler = build_scheduler(optimizer, config, saved_steps)
            for _ in range(saved_steps):  # epoch 1, saved
                optimizer.step()
                scheduler.step()
            saved = optimizer.state_dict()

            reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
            uninterrupted = build_scheduler(reference, config, steps)
            expected = []
            for _ in range(3 * steps):
                reference.step()
                uninterrupted.step()
                expected.append(uninterrupted.get_last_lr()[0])

            resumed = torch.optim.SGD([parameter], lr=0.1, momentum=0.9)
            resumed.load_state_dict(saved)
            scheduler = build_scheduler(resumed, config, steps, start_step=steps)
            rates = [scheduler.get_last_lr()[0]]
            for _ in range(2 * steps):
                resumed.step()
                scheduler.step()
                rates.append(scheduler.get_last_lr()[0])
            assert rates == pytest.approx(expected[steps - 1:], rel=1e-12), (schedule, saved_steps, steps)
            assert schedule != "cosine" or expected[-1] < 1e-9


def test_runtime_for_cuda_turns_on_tf32_and_cudnn_autotuning(monkeypatch):
    """float32 runs (``--no-amp``) on a GPU use its tensor cores and cuDNN's fastest kernels."""
    import convzoo.engine.runtime as runtime

    precision, benchmark = torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark
    monkeypatch.setattr(runtime, "pick_device", lambda name: torch.device("cuda"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    try:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.benchmark = False
        assert runtime.setup_runtime("cuda").device.type == "cuda"
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.benchmark
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.benchmark = benchmark


@pytest.mark.cuda
def test_a_cuda_training_run_with_scratch_convolutions_under_autocast(tmp_path):
    """A real CUDA step: bf16 autocast (the default there), channels-last, the scratch
    convolution chained through a ResNet, TF32 for float32 work while training (and the
    process's own settings back afterwards), and a resume."""
    precision, benchmark = torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark
    config = small_config(tmp_path, model="resnet20", conv="scratch", device="cuda", epochs=2, train_size=256,
                          batch_size=64, lr=0.02)
    result = train(config, quiet=True)
    assert result["device"].startswith("cuda") and math.isfinite(result["final_loss"])
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark) == (precision, benchmark)


@pytest.mark.cuda
def test_a_cuda_resume_where_another_gpu_count_was_visible(tmp_path, monkeypatch):
    """The real case of the simulated test above: a checkpoint holding eight GPUs' generator
    states resumes on this one."""
    config = small_config(tmp_path, device="cuda", train_size=128)
    stop_after_first_epoch(config, monkeypatch)
    last = tmp_path / "runs" / "run" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["rng"] = {"torch": torch.get_rng_state(), "cuda": [torch.cuda.get_rng_state()] * 8}
    torch.save(state, last)
    assert train(None, resume=tmp_path / "runs" / "run", quiet=True)["epochs"] == 2


def test_resuming_a_complete_run_says_so(tmp_path):
    train(small_config(tmp_path, epochs=1), quiet=True)
    result = train(None, resume=tmp_path / "runs" / "run", quiet=True)
    assert result["already_complete"] is True and result["epochs"] == 1


@pytest.mark.parametrize("changed", [{"model": "resnet20"}, {"epochs": 5}, {"dataset": "mnist"}, {"schedule": "step"}])
def test_resume_refuses_flags_that_change_the_run(tmp_path, changed):
    train(small_config(tmp_path, epochs=1), quiet=True)
    with pytest.raises(ConvzooError, match="Start a new run instead"):
        train(None, resume=tmp_path / "runs" / "run", overrides=changed, quiet=True)


def test_resume_accepts_flags_that_do_not_change_the_run(tmp_path):
    train(small_config(tmp_path, epochs=1), quiet=True)
    result = train(None, resume=tmp_path / "runs" / "run", overrides={"device": "cpu", "epochs": 1}, quiet=True)
    assert result["already_complete"]


def test_an_existing_run_folder_is_never_overwritten(tmp_path):
    train(small_config(tmp_path, epochs=1), quiet=True)
    before = (tmp_path / "runs" / "run" / "last.pt").read_bytes()
    with pytest.raises(ConvzooError, match="already holds a run"):
        train(small_config(tmp_path, epochs=1), quiet=True)
    assert (tmp_path / "runs" / "run" / "last.pt").read_bytes() == before


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    train(small_config(tmp_path, epochs=1, name="good"), quiet=True)
    good = tmp_path / "runs" / "good" / "last.pt"
    before = good.read_bytes()
    with pytest.raises(ConvzooError, match="loss became nan"):
        train(small_config(tmp_path, epochs=1, name="diverged", lr=1e30, schedule="constant"), quiet=True)
    assert not (tmp_path / "runs" / "diverged" / "last.pt").exists()
    assert good.read_bytes() == before


def test_runs_without_a_name_get_distinct_folders(tmp_path):
    first = train(small_config(tmp_path, epochs=1, name=None, train_size=64), quiet=True)
    second = train(small_config(tmp_path, epochs=1, name=None, train_size=64), quiet=True)
    assert first["run_dir"] != second["run_dir"]


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step", "constant"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_every_optimizer_and_schedule_trains(tmp_path, schedule, optimizer):
    lr = 0.05 if optimizer == "sgd" else 2e-3
    result = train(small_config(tmp_path, epochs=1, schedule=schedule, optimizer=optimizer, lr=lr,
                                warmup_epochs=0.5, label_smoothing=0.1, grad_clip=1.0), quiet=True)
    assert result["final_loss"] < math.log(10) + 0.1


def test_warmup_then_cosine_schedule_shape():
    from convzoo.engine.optim import lr_factor

    config = TrainConfig(epochs=10, warmup_epochs=1, schedule="cosine")
    factors = [lr_factor(step, 100, 10, config, 10) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[-1] < 0.01
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step", "constant"])
@pytest.mark.parametrize("warmup_epochs", [0, 0.5, 1])
@pytest.mark.parametrize(("epochs", "steps_per_epoch"), [(1, 1), (2, 1), (2, 2), (4, 1), (3, 3), (10, 7)])
def test_schedules_step_through_runs_of_any_length(schedule, warmup_epochs, epochs, steps_per_epoch):
    """Tiny runs (a smoke test's handful of steps) must not trip a schedule's arithmetic."""
    from convzoo.engine.optim import build_scheduler

    if warmup_epochs >= epochs:
        pytest.skip("validation refuses a warm-up as long as the run")
    config = TrainConfig(epochs=epochs, warmup_epochs=warmup_epochs, schedule=schedule, lr=0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    rates = []
    for _ in range(epochs * steps_per_epoch):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    assert all(math.isfinite(rate) and 0 <= rate <= 0.1 + 1e-12 for rate in rates)
