"""Running `worker.py` in the external Python and reading its JSON lines, without bpy, so the
operators stay thin and this part is tested outside Blender.

A `Job` is polled (a modal operator's timer, or a loop in background mode); reader threads only
move lines into queues and never touch Blender data.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WORKER = Path(__file__).with_name("worker.py")
CHECK_TIMEOUT = 120.0
"""Seconds `check_backend` waits: importing torch the first time can take a while."""
POLL_INTERVAL = 0.05
"""Seconds between looks at a job run to the end in one call."""
TERMINATE_GRACE = 5.0
"""Seconds a cancelled worker gets to clean up after SIGTERM before it is killed."""
ONLINE_SETTING = "Allow Online Access (Edit › Preferences › System › Network)"
"""Blender's switch for network use, which the worker obeys (`bpy.app.online_access`)."""


class BackendError(RuntimeError):
    """The external Python could not run or finish the job; the message says why."""


@dataclass(frozen=True)
class RefineResult:
    path: Path
    width: int
    height: int
    polarity: str


def refine_command(python: str, photo: str, output: str, *, mode: str, steps: int,
                   weights: str, predictor: str, device: str,
                   snap_edges: bool = True) -> list[str]:
    """The worker's command line for one photo (a list: no shell, any characters in paths);
    `snap_edges=False` keeps the refined edges as N_r leaves them."""
    return [_python(python), str(WORKER), "refine", photo, output, "--mode", mode,
            "--steps", str(steps), *_options(weights, predictor, device, snap_edges)]


def frames_command(python: str, photos: list[str], folder: str, *, weights: str,
                   predictor: str, device: str, snap_edges: bool = True) -> list[str]:
    """The worker's command line for numbered photo frames refined as one clip into `folder`
    (one-stage; the frames in order)."""
    return [_python(python), str(WORKER), "frames", folder, *photos,
            *_options(weights, predictor, device, snap_edges)]


def video_command(python: str, video: str, folder: str, *, weights: str, predictor: str,
                  device: str, snap_edges: bool = True) -> list[str]:
    """The worker's command line for a video file's frames refined as one clip into `folder`
    (its decoded frames kept in `folder`/photos, the mesh's texture)."""
    return [_python(python), str(WORKER), "video", folder, video,
            *_options(weights, predictor, device, snap_edges)]


def _options(weights: str, predictor: str, device: str, snap_edges: bool) -> list[str]:
    """The options every refining command takes."""
    return ["--weights", weights or "default", "--predictor", predictor, "--device", device,
            *([] if snap_edges else ["--no-snap-edges"])]


def check_backend(python: str, predictor: str, *, online: bool) -> str:
    """One line on what `python` offers (sddr, torch, device) when it can run Estimate &
    Refine with `predictor`; otherwise a BackendError naming each missing piece and its fix.

    Weights that are not cached are missing only when `online` (Blender's *Allow Online
    Access*) is off; otherwise the first refinement downloads them, and the line says so.
    """
    job = Job([_python(python), str(WORKER), "check", "--predictor", predictor], online=online)
    try:
        report = job.wait(timeout=CHECK_TIMEOUT)
    finally:
        job.cancel()
    problems = []
    if report.get("install_extra"):
        problems.append("the 'predictors' extra (transformers) is not installed: "
                        f"{report['install_extra']}")
    if not report.get("weights") and not online:
        problems.append(offline_weights_message(predictor, report["fetch"]))
    if problems:
        raise BackendError(f"{report['python']} runs sddr {report['sddr']} but cannot run "
                           f"Estimate & Refine: {'; '.join(problems)}")
    weights = ("weights cached" if report.get("weights")
               else "weights not cached yet: the first Estimate & Refine downloads them")
    return (f"sddr {report['sddr']}, torch {report['torch']}, device {report['device']}, "
            f"{predictor} {weights} ({report['python']})")


def offline_weights_message(predictor: str, fetch: str) -> str:
    """Why predictor weights missing from the cache cannot be fetched from Blender now, and
    the two ways to get them."""
    return (f"the weights of predictor {predictor} are not in the Hugging Face cache, and "
            f"Blender's {ONLINE_SETTING} is off. Turn it on to download them once, or fetch "
            f"them in a terminal: {fetch}")


class Job:
    """One worker process: `poll()` returns the events so far, `outcome()` the end."""

    def __init__(self, command: list[str], *, online: bool = True) -> None:
        """Start `command`; without `online` (Blender's "Allow Online Access" off) the worker
        is told to use only the Hugging Face cache."""
        self.online = online
        environment = None if online else {**os.environ, "HF_HUB_OFFLINE": "1"}
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                env=environment)
        except OSError as err:
            raise BackendError(f"cannot start the external Python '{command[0]}': "
                               f"{err.strerror or err}") from None
        self.events: queue.Queue[dict] = queue.Queue()
        self.stderr: deque[str] = deque(maxlen=20)
        self.result: dict | None = None
        self.error: dict | None = None
        self.cancelled = False
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()

    def poll(self) -> list[dict]:
        """Events that arrived since the last call (progress, warnings); the final event is
        kept for `outcome`."""
        found = []
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return found
            if event["event"] == "error":
                self.error = event
            elif event["event"] in ("done", "check"):
                self.result = event
            else:
                found.append(event)

    @property
    def running(self) -> bool:
        return self.process.poll() is None or any(r.is_alive() for r in self._readers)

    def cancel(self) -> None:
        """Stop the worker (SIGTERM, then SIGKILL after a grace period); it removes its own
        temporary files."""
        if self.process.poll() is None:
            self.cancelled = True
            self.process.terminate()
            try:
                self.process.wait(TERMINATE_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for reader in self._readers:
            reader.join(timeout=TERMINATE_GRACE)

    def outcome(self) -> dict:
        """The final event of a finished job; BackendError saying what went wrong otherwise."""
        self.poll()
        code = self.process.poll()
        if self.cancelled:
            raise BackendError("cancelled: the refinement was stopped, no depth file written")
        if self.error:
            raise BackendError(self._explain(self.error))
        if code == 0 and self.result is not None:
            return self.result
        if code is not None and code < 0:
            reason = f"was killed by signal {signal.Signals(-code).name}"
        else:
            reason = f"exited with status {code}"
        tail = " | ".join(line for line in self.stderr if line.strip())[-600:]
        raise BackendError(f"the sddr process {reason} before finishing"
                           + (f": {tail}" if tail else " (it printed nothing)"))

    def _explain(self, error: dict) -> str:
        """The worker's error message; missing predictor weights in a job that Blender kept
        offline are explained by Blender's setting, not the worker's environment variable."""
        message = str(error.get("message", ""))
        if not self.online and error.get("fetch"):
            return offline_weights_message(str(error["predictor"]), str(error["fetch"]))
        return message

    def wait(self, timeout: float | None = None,
             on_event: Callable[[dict], None] | None = None) -> dict:
        """Run to the end (background mode, checks), passing events to `on_event` as they
        arrive."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            for event in self.poll():
                if on_event:
                    on_event(event)
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise BackendError(f"the external Python gave no answer in {timeout:.0f} s")
            time.sleep(POLL_INTERVAL)
        for event in self.poll():
            if on_event:
                on_event(event)
        return self.outcome()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:  # a library printing to stdout: keep it for the error message
                self.stderr.append(line.rstrip())
                continue
            if isinstance(event, dict) and "event" in event:
                self.events.put(event)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line.rstrip())


def refine_result(event: dict) -> RefineResult:
    """The worker's `done` event as a result; one that lacks a field or holds a wrong value (a
    worker of another version) is a BackendError that shows the event."""
    try:
        result = RefineResult(Path(event["path"]), int(event["width"]), int(event["height"]),
                              str(event["polarity"]))
    except (KeyError, TypeError, ValueError) as err:
        raise BackendError(f"the worker's result is malformed ({err!r}): "
                           f"{json.dumps(event)[:200]}") from None
    if result.width < 1 or result.height < 1:
        raise BackendError(f"the worker's result has size {result.width}×{result.height}")
    return result


def _python(python: str) -> str:
    """The external Python as an absolute path, refused early when it cannot be run."""
    if not python:
        raise BackendError("no external Python set: choose the Python that has sddr installed "
                           "in the SDDR add-on preferences")
    path = Path(os.path.expanduser(python))
    if not path.is_file():
        raise BackendError(f"external Python '{python}' does not exist")
    if not os.access(path, os.X_OK):
        raise BackendError(f"external Python '{python}' is not executable")
    return str(path)
