"""`.ci/run` runs the README's test command and fails when any step of it fails.

A CI run once ran out of disk during `pip install`: under `set -e` the failed `a && b && c`
list did not stop the script, the tests never ran, and only the next step's failure turned the
run red. Without a later failing step it would have passed having tested nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    """The two commands of the README's first code block."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None, "README.md has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readmes_test_command_verbatim():
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def _fake_tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_a_failed_install_fails_ci_before_any_later_step(tmp_path):
    repo, tools = tmp_path / "repo", tmp_path / "bin"
    (repo / ".ci").mkdir(parents=True)
    tools.mkdir()
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    # python3 makes a venv whose pip fails, as pip did with a full disk
    _fake_tool(tools, "python3",
               'mkdir -p .venv/bin && printf "#!/bin/sh\\nexit 1\\n" > .venv/bin/pip'
               ' && chmod +x .venv/bin/pip')
    later_step = tmp_path / "bpy-step-ran"
    _fake_tool(tools, "python3.11", f'touch "{later_step}"')
    env = {**os.environ, "PATH": f"{tools}:/usr/bin:/bin"}
    run = subprocess.run(["bash", str(repo / ".ci" / "run")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert not later_step.exists()
