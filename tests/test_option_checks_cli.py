"""Options checked where the user types them (issue 22, items 12, 13 and 15): nonsense is a
one-line usage error (exit 2) before any work, never an internal error or silently used,
and messages name only options the command has."""

from __future__ import annotations

import pytest


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("arguments, message", [
    (["attack", "--batch-size", "0"], "--batch-size"),
    (["attack", "--batch-size", "-1"], "--batch-size"),
    (["attack", "--samples", "0"], "--samples"),
    (["attack", "--steps", "5"], "FGSM takes one step"),
    (["explain", "--method", "occlusion", "--window", "100", "--samples", "1"], "--window 100 is larger"),
    (["explain", "--method", "occlusion", "--window", "0", "--samples", "1"], "--window"),
    (["explain", "--sanity", "--sanity-layers", "-2", "--samples", "1"], "--sanity-layers"),
    (["explain", "--method", "saliency", "--layer", "features.4", "--samples", "1"], "--layer chooses Grad-CAM's"),
    (["visualize", "maximize", "--layer", "features.4", "--lr", "-1"], "--lr must be positive"),
    (["visualize", "dream", "--layer", "features.4", "--index", "0", "--lr", "-1"], "--lr must be positive"),
    (["visualize", "erf", "--noise", "--input-side", "0"], "--input-side"),
    (["visualize", "erf", "--noise", "--input-side", "8", "--samples", "2"], "does not run on (1, 8, 8) inputs"),
])
def test_inspection_nonsense_is_one_usage_line(cli, lenet_checkpoint, tmp_path, arguments, message):
    *command, = arguments
    code, _, err = cli(*command, "--checkpoint", lenet_checkpoint, "--out", tmp_path)
    assert code == 2, err
    assert message in _one_error_line(err)
    assert not any(tmp_path.iterdir())  # refused before a run folder was claimed


@pytest.mark.parametrize("arguments", [["--threads", "-1"], ["--num-classes", "0"]])
def test_bench_nonsense_is_one_usage_line(cli, arguments):
    code, _, err = cli("bench", "--model", "lenet5", "--steps", "1", "--warmup", "0", *arguments)
    assert code == 2 and arguments[0] in _one_error_line(err)


@pytest.mark.parametrize("arguments, absent", [
    (["probe", "--model", "lenet5"], "--weights"),
    (["predict", "--model", "lenet5", "x.png"], "--random-init"),
    (["visualize", "dream", "--model", "lenet5", "--random-init", "--layer", "features.4"], "--samples"),
])
def test_messages_name_only_options_the_command_has(cli, tmp_path, arguments, absent):
    code, _, err = cli(*arguments, *(["--out", tmp_path] if arguments[0] != "predict" else []))
    assert code == 2
    assert absent not in _one_error_line(err)


def test_export_help_does_not_name_a_seed_option_it_lacks(cli):
    code, out, _ = cli("export", "--help")
    assert code == 0 and "--seed" not in out


def test_ctrl_c_of_an_inspection_command_does_not_speak_of_epochs(cli, lenet_checkpoint, tmp_path, monkeypatch):
    import convzoo.attribution

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convzoo.attribution, "Explainer", interrupted)
    code, _, err = cli("explain", "--checkpoint", lenet_checkpoint, "--samples", "1", "--out", tmp_path)
    assert code == 130
    line = _one_error_line(err)
    assert "interrupted" in line and "epoch" not in line and "checkpoint" not in line
