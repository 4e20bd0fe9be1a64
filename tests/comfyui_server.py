"""A real ComfyUI server with this repository as its one custom node, and the HTTP calls that
drive it: for tests/test_comfyui_real.py and benchmarks/workflow_thumbnails.py (docs/comfyui.md,
"Testing against a real ComfyUI")."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STARTUP_S = 120
RUN_S = 180


class ServerError(RuntimeError):
    """The server did not start, or a prompt did not finish in time."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def prepare_base(base: Path) -> None:
    """A ComfyUI base folder whose custom_nodes/sddr is this repository."""
    for folder in ("custom_nodes", "models/sddr", "input", "output", "user"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / "sddr").symlink_to(REPO, target_is_directory=True)


def start(base: Path, comfyui_dir: str, python: str) -> tuple[subprocess.Popen, str]:
    """Start ComfyUI (CPU) on `base` and wait until it answers: (process, url). Its log goes
    to base/server.log. Its Hugging Face Hub is a closed local port: online mode with no
    network, as on a machine without one, whether or not this one has a network."""
    port = free_port()
    with (base / "server.log").open("w") as log:
        process = subprocess.Popen(
            [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
             "--disable-auto-launch", "--base-directory", str(base)],
            cwd=comfyui_dir, stdout=log, stderr=subprocess.STDOUT,
            env={name: value for name, value in os.environ.items()
                 if name not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
            | {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while True:
        if process.poll() is not None:
            raise ServerError(f"ComfyUI exited ({process.returncode}): "
                              f"{(base / 'server.log').read_text()[-3000:]}")
        try:
            get(f"{url}/system_stats")
            return process, url
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise ServerError(f"ComfyUI did not answer within {STARTUP_S} s") from None
            time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def run(url: str, graph: dict, client_id: str | None = None,
        targets: list[str] | None = None) -> dict:
    """POST an API-format graph to /prompt (only the output nodes `targets`, if given) and
    poll /history until it finishes: its history entry."""
    body = {"prompt": graph, "client_id": client_id or str(uuid.uuid4())}
    if targets is not None:
        body["partial_execution_targets"] = targets
    request = urllib.request.Request(f"{url}/prompt", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        prompt_id = json.load(response)["prompt_id"]
    deadline = time.monotonic() + RUN_S
    while time.monotonic() < deadline:
        history = json.loads(get(f"{url}/history/{prompt_id}"))
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            return history[prompt_id]
        time.sleep(0.25)
    raise ServerError(f"prompt {prompt_id} did not finish within {RUN_S} s")


def view(url: str, item: dict) -> bytes:
    """The bytes of an output listed in /history ({filename, subfolder, type})."""
    return get(f"{url}/view?{urllib.parse.urlencode(item)}")
