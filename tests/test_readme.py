"""The README runs top to bottom, as written, on a fresh clone (issue 16, item 7).

Every ```bash block of README.md is run in order, each command in the same working
folder: a fresh "clone" in a temporary folder (the repository's files linked in, no
``runs/``) with ``../shared/data`` beside it pointing at the real datasets, as in CI.
``python`` blocks run too, in that folder; other blocks (yaml, text) are file contents
and are not run.

Shortened by ``CONVZOO_QUICK=1``: every training run, probe and evaluation becomes a
smoke test of at most ``convzoo.config.QUICK_EPOCHS`` epoch on a few hundred images
(``QUICK_TRAIN_SIZE``, ``QUICK_TEST_SIZE``), with the same commands, files and outputs.
Commands that honour it: train (through config loading), eval, probe; a new command with
long loops should cap them with ``convzoo.config.quick_cap``.

``--weights torchvision`` finds a stand-in file (random values) in a temporary torch hub
cache (``$TORCH_HOME``): no weights can be downloaded where the tests run.

What is not run:
- a block preceded by ``<!-- readme-test: skip (reason) -->`` (several GPUs, a server
  such as ``tensorboard``, the test suite itself); say why in the marker;
- ``pip install ...`` steps joined with ``&&``: the test runs in the installed environment.

``convzoo ...`` commands run in-process through the Typer app (the console script calls
the same ``app``), which saves a torch import per command; anything else (``python
benchmarks/...``) runs in a shell. A failure names the README line, the command and the
end of its stderr.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, real_data_dir, torchvision_standin

README = REPO / "README.md"
SKIP_MARKER = re.compile(r"<!--\s*readme-test:\s*skip\b")
FENCE = re.compile(r"^```(\w*)\s*$")
RUN_LANGUAGES = {"bash": "shell", "sh": "shell", "shell": "shell", "python": "python"}
NOT_COPIED = {".git", "runs", ".pytest_cache", "__pycache__", ".venv", "venv", "build", "dist"}


@dataclass
class Snippet:
    line: int
    """README line of the command (1-based), for the failure message."""
    kind: str
    """``shell`` or ``python``."""
    text: str


def readme_snippets(text: str) -> list[Snippet]:
    """The runnable commands of a README, in order (see the module docstring for the rules)."""
    snippets: list[Snippet] = []
    lines = text.splitlines()
    index, skip_next = 0, False
    while index < len(lines):
        line = lines[index]
        fence = FENCE.match(line)
        if SKIP_MARKER.search(line):
            skip_next = True
        elif fence:
            start = index + 1
            end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
            kind = RUN_LANGUAGES.get(fence.group(1))
            if kind == "python" and not skip_next:
                snippets.append(Snippet(start + 1, "python", "\n".join(lines[start:end])))
            elif kind == "shell" and not skip_next:
                snippets.extend(_shell_commands(lines[start:end], start + 1))
            skip_next = False
            index = end
        index += 1
    return snippets


def _shell_commands(block: list[str], first_line: int) -> list[Snippet]:
    """One snippet per command: backslash continuations joined, ``pip install`` steps dropped."""
    commands: list[Snippet] = []
    pending, pending_line = "", first_line
    for offset, line in enumerate(block):
        if not pending:
            pending_line = first_line + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if not command or command.startswith("#"):
            continue
        steps = [step.strip() for step in command.split("&&")]
        steps = [step for step in steps if not step.startswith("pip install")]
        if steps:
            commands.append(Snippet(pending_line, "shell", " && ".join(steps)))
    return commands


def fresh_clone(tmp_path: Path, data: Path) -> Path:
    """``tmp/clone`` holding the repository's files (linked, no runs/), ``tmp/shared/data`` beside it."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in NOT_COPIED:
            (clone / entry.name).symlink_to(entry)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(data)
    return clone


def run_convzoo(argv: list[str]) -> tuple[int, str]:
    """``convzoo ARGS`` in-process, as the console script would run it; (exit code, stderr)."""
    from typer.testing import CliRunner

    from convzoo.cli import app

    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always keeps stderr apart
        runner = CliRunner()
    result = runner.invoke(app, argv, prog_name="convzoo")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        return 1, "".join(traceback.format_exception(result.exception))
    return result.exit_code, result.stderr


def run_python(code: str) -> tuple[int, str]:
    """A README python block, in a fresh namespace in this process."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})  # noqa: S102 - the README's own code
    except Exception as error:  # noqa: BLE001 - reported with the README line
        return 1, f"{type(error).__name__}: {error}"
    return 0, ""


def run_shell(command: str, clone: Path) -> tuple[int, str]:
    completed = subprocess.run(["bash", "-c", command], cwd=clone, capture_output=True, text=True, timeout=600,
                               env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    return completed.returncode, completed.stderr


def run_snippet(snippet: Snippet, clone: Path) -> tuple[int, str]:
    if snippet.kind == "python":
        return run_python(snippet.text)
    for step in snippet.text.split(" && "):
        argv = shlex.split(step, comments=True)
        if argv and argv[0] == "convzoo" and not any(token in step for token in ("|", ">", "<", "$(")):
            code, err = run_convzoo(argv[1:])
        else:
            code, err = run_shell(step, clone)
        if code != 0:
            return code, err
    return 0, ""


def test_the_readme_parser_follows_its_rules():
    text = "\n".join([
        "```bash", "pip install -e . && convzoo list", "convzoo train --model lenet5 \\", "  --epochs 1  # note",
        "```", "<!-- readme-test: skip (needs 4 GPUs) -->", "```bash", "torchrun -m convzoo train", "```",
        "```yaml", "model: lenet5", "```", "```python", "import convzoo", "```",
    ])
    snippets = readme_snippets(text)
    assert [(s.line, s.kind, s.text) for s in snippets] == [
        (2, "shell", "convzoo list"),
        (3, "shell", "convzoo train --model lenet5    --epochs 1  # note"),
        (14, "python", "import convzoo"),
    ]


@pytest.mark.slow
def test_every_readme_command_runs_in_order_on_a_fresh_clone(tmp_path, monkeypatch):
    data = real_data_dir()
    if data is None:
        pytest.skip("real datasets not found: set CONVZOO_DATA to the folder holding MNIST/ and FashionMNIST/")
    clone = fresh_clone(tmp_path, data)
    monkeypatch.chdir(clone)
    monkeypatch.setenv("CONVZOO_QUICK", "1")
    monkeypatch.delenv("CONVZOO_DATA", raising=False)  # the README's own --data-dir must lead to the data
    # No download here: the ImageNet file of the fine-tuning section's --weights torchvision
    # is stood in by one of random values, found where torch's hub cache looks.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    torchvision_standin(tmp_path / "torch-home", "resnet18")
    snippets = readme_snippets(README.read_text())
    assert snippets, "README.md has no runnable commands"
    for snippet in snippets:
        code, err = run_snippet(snippet, clone)
        tail = " | ".join(err.strip().splitlines()[-3:])
        assert code == 0, f"README.md line {snippet.line}: `{snippet.text}` exited {code}: {tail}"
