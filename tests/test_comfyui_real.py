"""The node pack inside a real ComfyUI: the contract with its `comfy_api`, and a real server
running a graph. Skipped unless COMFYUI_DIR points at a ComfyUI checkout (docs/comfyui.md,
"Testing against a real ComfyUI"); COMFYUI_PYTHON is the Python that runs it (default: this
one). CPU only: the server runs with --cpu."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from sddr_core.files.depth_io import read_depth
from sddr_core.predictors import fetch_command
from tests.test_predictors import save_tiny_predictor

REPO = Path(__file__).resolve().parent.parent
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)
NODE_IDS = ["SDDRLoadRefiner", "SDDRRefineDepth", "SDDRDepthFromImage", "SDDRDepthEdges",
            "SDDRSaveDepth", "SDDRLoadDepth"]
STARTUP_S = 120
RUN_S = 180
HIGH_SIZE = (96, 128)

pytestmark = pytest.mark.skipif(
    not COMFYUI_DIR, reason="COMFYUI_DIR is not set: no real ComfyUI to test against "
    "(see docs/comfyui.md, 'Testing against a real ComfyUI')")

CONTRACT = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import comfy.options
comfy.options.enable_args_parsing(False)
from comfyui_nodes import nodes
print(json.dumps({n.GET_SCHEMA().node_id: n.GET_NODE_INFO_V1() for n in nodes.NODES},
                 default=str))
"""


def test_every_node_satisfies_the_real_comfy_api():
    """GET_SCHEMA and GET_NODE_INFO_V1 of the real comfy_api accept every node."""
    done = subprocess.run([PYTHON, "-c", CONTRACT, COMFYUI_DIR, str(REPO)], cwd=COMFYUI_DIR,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(info) == NODE_IDS
    assert info["SDDRLoadRefiner"]["output"] == ["SDDR_REFINER"]
    assert info["SDDRLoadRefiner"]["display_name"] == "SDDR Load Refiner"
    assert info["SDDRRefineDepth"]["output"] == ["IMAGE", "MASK"]
    assert info["SDDRRefineDepth"]["input"]["required"]["refiner"][0] == "SDDR_REFINER"
    assert info["SDDRSaveDepth"]["output_node"] is True
    assert info["SDDRLoadDepth"]["output"] == ["IMAGE", "MASK", "FLOAT", "FLOAT"]
    assert info["SDDRLoadDepth"]["input"]["required"]["file"][1]["image_upload"] is True
    assert info["SDDRRefineDepth"]["input"]["hidden"] == {"unique_id": ["UNIQUE_ID"]}
    for node_id, node in info.items():
        for name, (_, options) in node["input"]["required"].items():
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"


# ----------------------------------------------------------------------------- the server

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _write_depth_png(path: Path, height: int, width: int) -> None:
    """An 8-bit gray depth map: a floor nearer towards the bottom and a near box."""
    rows = np.linspace(30, 180, height)[:, None].repeat(width, axis=1)
    rows[height // 4: height // 2, width // 3: 2 * width // 3] = 230
    cv2.imwrite(str(path), rows.astype(np.uint8))


def _sddr(*args: str | Path) -> None:
    """The `sddr` CLI of this checkout."""
    done = subprocess.run([sys.executable, "-m", "sddr_core.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """`sddr demo`'s 16-bit low.png and high.png, and `sddr refine --low --high` of them."""
    folder = tmp_path_factory.mktemp("demo")
    _sddr("demo", "-o", folder)
    _sddr("refine", "--low", folder / "low.png", "--high", folder / "high.png",
          "-o", folder / "cli.npy")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights, demo):
    """A ComfyUI server (CPU) whose base folder holds this repository as a custom node, the
    tiny model in models/sddr, a tiny random Depth Anything V2 Small in models/sddr_predictors,
    two 8-bit depth maps and the demo's 16-bit pair in input/. Its Hugging Face Hub is a closed
    local port: online mode, no network, as on a machine without one."""
    base = tmp_path_factory.mktemp("comfyui")
    for folder in ("custom_nodes", "models/sddr", "input", "output", "user"):
        (base / folder).mkdir(parents=True)
    (base / "custom_nodes" / "sddr").symlink_to(REPO, target_is_directory=True)
    shutil.copy(weights, base / "models" / "sddr" / "tiny.safetensors")
    save_tiny_predictor(base / "models" / "sddr_predictors", "depth-anything-v2-small")
    _write_depth_png(base / "input" / "low.png", 48, 64)
    _write_depth_png(base / "input" / "high.png", *HIGH_SIZE)
    for name in ("low", "high"):
        shutil.copy(demo / f"{name}.png", base / "input" / f"demo_{name}.png")
    port = _free_port()
    log = (base / "server.log").open("w")
    process = subprocess.Popen(
        [PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
         "--disable-auto-launch", "--base-directory", str(base)],
        cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT,
        env={name: value for name, value in os.environ.items()
             if name not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        | {"HF_ENDPOINT": f"http://127.0.0.1:{_free_port()}"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"ComfyUI exited ({process.returncode}): "
                        f"{(base / 'server.log').read_text()[-3000:]}")
        try:
            _get(f"{url}/system_stats")
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"ComfyUI did not answer within {STARTUP_S} s")
            time.sleep(0.5)
    yield url, base
    process.terminate()
    process.wait(timeout=30)
    log.close()


def _run(url: str, graph: dict, client_id: str | None = None) -> dict:
    """POST an API-format graph to /prompt and poll /history until it finishes."""
    body = json.dumps({"prompt": graph, "client_id": client_id or str(uuid.uuid4())}).encode()
    request = urllib.request.Request(f"{url}/prompt", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        prompt_id = json.load(response)["prompt_id"]
    deadline = time.monotonic() + RUN_S
    while time.monotonic() < deadline:
        history = json.loads(_get(f"{url}/history/{prompt_id}"))
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            return history[prompt_id]
        time.sleep(0.25)
    pytest.fail(f"prompt {prompt_id} did not finish within {RUN_S} s")


def _graph(low: dict) -> dict:
    """low → SDDRRefineDepth ← high (LoadImage), refiner from the models folder; the result
    saved by SaveImage (8-bit) and by SDDRSaveDepth (16-bit)."""
    return {
        "1": low,
        "2": {"class_type": "LoadImage", "inputs": {"image": "high.png"}},
        "3": {"class_type": "SDDRLoadRefiner",
              "inputs": {"weights": "tiny.safetensors", "device": "cpu", "precision": "fp32",
                         "max_side": 256}},
        "4": {"class_type": "SDDRRefineDepth",
              "inputs": {"refiner": ["3", 0], "low_depth": ["1", 0], "high_depth": ["2", 0],
                         "width": 0, "height": 0, "normalisation": "per frame",
                         "input_polarity": "auto"}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0],
                                                    "filename_prefix": "e2e"}},
        "6": {"class_type": "SDDRSaveDepth", "inputs": {"depth": ["4", 0],
                                                        "filename_prefix": "sddr/e2e",
                                                        "format": "png16",
                                                        "scaling": "as is"}},
    }


def test_server_registers_the_six_nodes(server):
    url, base = server
    info = json.loads(_get(f"{url}/object_info"))
    assert [node for node in NODE_IDS if node in info] == NODE_IDS
    assert "tiny.safetensors" in json.dumps(info["SDDRLoadRefiner"])
    assert "IMPORT FAILED" not in "".join(
        line for line in (base / "server.log").read_text().splitlines() if "sddr" in line)


def test_graph_refines_depth_to_the_high_input_size(server):
    url, base = server
    result = _run(url, _graph({"class_type": "LoadImage", "inputs": {"image": "low.png"}}))
    assert result["status"]["status_str"] == "success", result["status"]
    saved = result["outputs"]["5"]["images"][0]
    query = urllib.parse.urlencode({**saved, "type": "output"})
    image = cv2.imdecode(np.frombuffer(_get(f"{url}/view?{query}"), np.uint8),
                         cv2.IMREAD_UNCHANGED)
    assert image.shape[:2] == HIGH_SIZE
    depth16 = result["outputs"]["6"]["images"][0]
    written = cv2.imread(str(base / "output" / depth16["subfolder"] / depth16["filename"]),
                         cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.shape == HIGH_SIZE
    # the same depth as SaveImage's 8-bit file, at 256 times its precision
    assert np.abs(written / 65535 - image[..., 0] / 255).max() <= 1 / 255 + 1e-6  # 8-bit: floor
    assert len(np.unique(written)) > len(np.unique(image[..., 0]))


def test_bad_input_is_reported_by_name_and_the_server_keeps_running(server):
    url, _ = server
    constant = {"class_type": "EmptyImage",
                "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 8421504}}
    result = _run(url, _graph(constant))
    assert result["status"]["status_str"] == "error"
    errors = [message for kind, message in result["status"]["messages"]
              if kind == "execution_error"]
    assert errors and errors[0]["node_type"] == "SDDRRefineDepth"
    assert "low_depth: frame 0 is constant" in errors[0]["exception_message"]
    assert json.loads(_get(f"{url}/system_stats"))["system"]


def _depth_from_image(predictor: str) -> dict:
    """high.png → SDDR Depth From Image (`predictor`) → SDDR Save Depth (npy, as is)."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "high.png"}},
        "3": _graph({})["3"],
        "4": {"class_type": "SDDRDepthFromImage",
              "inputs": {"refiner": ["3", 0], "image": ["1", 0], "predictor": predictor,
                         "mode": "one-stage", "steps": 3, "normalisation": "per frame",
                         "snap_edges": False}},
        "5": {"class_type": "SDDRSaveDepth",
              "inputs": {"depth": ["4", 0], "filename_prefix": "sddr/predicted",
                         "format": "npy", "scaling": "as is"}},
    }


def test_a_predictor_in_the_models_folder_runs_without_network(server):
    url, base = server
    result = _run(url, _depth_from_image("depth-anything-v2-small"))
    assert result["status"]["status_str"] == "success", result["status"]
    [saved] = _saved(base, result, "5", "depth_files")
    depth = np.load(saved)
    assert depth.shape == HIGH_SIZE and np.isfinite(depth).all()


def test_a_missing_predictor_fails_at_once_saying_in_two_lines_what_to_fetch(server):
    """Not in models/sddr_predictors, Hub unreachable: no retries (huggingface_hub's took
    about 25 s), and the model, the folder and the command that fetches it."""
    url, base = server
    started = time.monotonic()
    result = _run(url, _depth_from_image("depth-anything-v2-base"))
    elapsed = time.monotonic() - started
    errors = [message for kind, message in result["status"]["messages"]
              if kind == "execution_error"]
    assert errors and errors[0]["node_type"] == "SDDRDepthFromImage"
    what, how = errors[0]["exception_message"].splitlines()  # ComfyUI adds an empty line
    assert what.startswith("predictor depth-anything-v2-base: depth-anything/Depth-Anything-"
                           "V2-Base-hf (revision b1958afc")
    assert "is not in models/sddr_predictors" in what and "cannot be reached" in what
    folder = base / "models" / "sddr_predictors"
    assert how.endswith(fetch_command("depth-anything-v2-base", cache_dir=folder))
    assert elapsed < 10, elapsed
    assert "Retrying in" not in (base / "server.log").read_text()
    assert json.loads(_get(f"{url}/system_stats"))["system"]


# ------------------------------------------------------------ depth files in and out

WS_LISTENER = """
import asyncio, json, struct, sys
import aiohttp

async def listen(url, client_id):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/ws?clientId={client_id}") as socket:
            print("ready", flush=True)
            async for message in socket:
                if message.type == aiohttp.WSMsgType.BINARY:
                    kind, length = struct.unpack(">II", message.data[:8])
                    if kind == 3:  # progress text: node id, then the text
                        print(json.dumps({"node": message.data[8:8 + length].decode(),
                                          "text": message.data[8 + length:].decode()}),
                              flush=True)
                elif message.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(message.data)
                    if event["type"] == "executing" and event["data"]["node"] is None:
                        return

asyncio.run(listen(*sys.argv[1:]))
"""


def _refine_graph(loader: str, low: str, high: str, normalisation: str) -> dict:
    """Two loaders → SDDR Refine Depth (the bundled weights) → SDDR Save Depth, EXR as is."""
    load = ({"class_type": "SDDRLoadDepth", "inputs": {"values": "0..1"}} if loader == "depth"
            else {"class_type": "LoadImage", "inputs": {}})
    key = "file" if loader == "depth" else "image"
    return {
        "1": {**load, "inputs": {**load["inputs"], key: low}},
        "2": {**load, "inputs": {**load["inputs"], key: high}},
        "3": {"class_type": "SDDRLoadRefiner",
              "inputs": {"weights": "default", "device": "cpu", "precision": "fp32",
                         "max_side": 2048}},
        "4": {"class_type": "SDDRRefineDepth",
              "inputs": {"refiner": ["3", 0], "low_depth": ["1", 0], "high_depth": ["2", 0],
                         "width": 0, "height": 0, "normalisation": normalisation,
                         "input_polarity": "auto"}},
        "5": {"class_type": "SDDRSaveDepth",
              "inputs": {"depth": ["4", 0], "filename_prefix": f"sddr/{loader}",
                         "format": "exr", "scaling": "as is"}},
    }


def _saved(base: Path, result: dict, node: str, key: str) -> list[Path]:
    return [base / "output" / item["subfolder"] / item["filename"]
            for item in result["outputs"][node][key]]


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _upload(url: str, path: Path) -> str:
    """POST a file to /upload/image as the web UI's upload button does; its name in input/."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{url}/upload/image", data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["name"]


def test_demo_depth_through_load_depth_matches_the_cli(server, demo):
    """The demo's 16-bit pair through SDDR Load Depth → SDDR Refine Depth (raw: low_depth's
    units and polarity) → SDDR Save Depth is `sddr refine --low --high`'s result; the
    default near-bright output is the same map, and no warning is shown."""
    url, base = server
    result = _run(url, _refine_graph("depth", "demo_low.png", "demo_high.png", "raw"))
    assert result["status"]["status_str"] == "success", result["status"]
    [exr] = _saved(base, result, "5", "depth_files")
    refined, cli = read_depth(exr), np.load(demo / "cli.npy")
    assert refined.shape == cli.shape == (512, 768)
    assert _correlation(refined, cli) > 0.99
    assert "text" not in result["outputs"].get("4", {})
    default = _run(url, _refine_graph("depth", "demo_low.png", "demo_high.png", "per frame"))
    [exr] = _saved(base, default, "5", "depth_files")
    assert abs(_correlation(read_depth(exr), cli)) > 0.99


def test_demo_depth_through_load_image_is_refined_with_a_warning_on_the_node(server, demo):
    """Load Image clips the 16-bit files to 8 bits: SDDR Refine Depth still runs, and says so
    on the node (the web UI's progress text), in the prompt's outputs and in the log."""
    url, base = server
    client_id = str(uuid.uuid4())
    listener = subprocess.Popen([PYTHON, "-c", WS_LISTENER, url, client_id],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        result = _run(url, _refine_graph("image", "demo_low.png", "demo_high.png",
                                         "per frame"), client_id)
        texts = [json.loads(line) for line in listener.communicate(timeout=RUN_S)[0].splitlines()
                 if line.startswith("{")]
    finally:
        listener.kill()
    assert result["status"]["status_str"] == "success", result["status"]
    [warning] = result["outputs"]["4"]["text"]
    assert warning.startswith("low_depth: frame 0 has ")
    assert "at its maximum value 1" in warning and "\nhigh_depth: frame 0 has " in warning
    assert "SDDR Load Depth" in warning
    assert {"node": "4", "text": warning} in texts
    assert "[SDDR] low_depth: frame 0" in (base / "server.log").read_text()
    [exr] = _saved(base, result, "5", "depth_files")
    assert abs(_correlation(read_depth(exr), np.load(demo / "cli.npy"))) < 0.9


def test_saved_depth_loads_back_through_load_depth_to_the_same_values(server):
    """SDDR Save Depth's png16 and exr files, uploaded as the web UI does, load back through
    SDDR Load Depth (raw) to the values written; each format keeps its own counter."""
    url, base = server
    graph = _graph({"class_type": "SDDRLoadDepth", "inputs": {"file": "low.png",
                                                              "values": "0..1"}})
    graph["6"]["inputs"] |= {"filename_prefix": "sddr/trip", "scaling": "per frame"}
    graph["7"] = {"class_type": "SDDRSaveDepth",
                  "inputs": {"depth": ["4", 0], "filename_prefix": "sddr/trip",
                             "format": "exr", "scaling": "as is"}}
    result = _run(url, graph)
    assert result["status"]["status_str"] == "success", result["status"]
    [png] = _saved(base, result, "6", "images")
    [exr] = _saved(base, result, "7", "depth_files")
    assert (png.name, exr.name) == ("trip_00001_.png", "trip_00001_.exr")
    for written in (png, exr):
        name = _upload(url, written)
        loaded = _run(url, {
            "1": {"class_type": "SDDRLoadDepth", "inputs": {"file": name, "values": "raw"}},
            "2": {"class_type": "SDDRSaveDepth",
                  "inputs": {"depth": ["1", 0], "filename_prefix": "sddr/back",
                             "format": "npy", "scaling": "as is"}}})
        assert loaded["status"]["status_str"] == "success", loaded["status"]
        [back] = _saved(base, loaded, "2", "depth_files")
        np.testing.assert_array_equal(np.load(back), read_depth(written))


def test_load_depth_reads_a_file_again_when_its_content_changes(server):
    """ComfyUI re-runs SDDR Load Depth (and what follows) for a file replaced under the same
    name, and only then: its fingerprint is the file's content."""
    url, base = server
    ramp = np.arange(48 * 64, dtype=np.float32).reshape(48, 64)
    graph = {"1": {"class_type": "SDDRLoadDepth", "inputs": {"file": "swap.npy",
                                                             "values": "raw"}},
             "2": {"class_type": "SDDRSaveDepth",
                   "inputs": {"depth": ["1", 0], "filename_prefix": "sddr/swap",
                              "format": "npy", "scaling": "as is"}}}
    saved = []
    for content in (ramp, ramp, ramp * 2):
        np.save(base / "input" / "swap.npy", content)
        result = _run(url, graph)
        assert result["status"]["status_str"] == "success", result["status"]
        saved.append(_saved(base, result, "2", "depth_files")[0])
    assert saved[0] == saved[1]  # unchanged: cached, nothing written again
    assert saved[2] != saved[0]
    np.testing.assert_array_equal(np.load(saved[2]), ramp * 2)


# ------------------------------------------------------------------------- the web UI

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WEB_DRIVER = """
import asyncio, json, subprocess, sys, time, urllib.request
import aiohttp

url, chromium, port, profile, *workflows = sys.argv[1:]


def get(path):
    with urllib.request.urlopen(path, timeout=10) as response:
        return json.load(response)


async def drive():
    browser = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                                f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
                                "--window-size=1600,1000", url],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                pages = [p for p in get(f"http://127.0.0.1:{port}/json") if p["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                calls = 0

                async def js(expression):
                    nonlocal calls
                    calls += 1
                    await ws.send_json({"id": calls, "method": "Runtime.evaluate", "params": {
                        "expression": expression, "awaitPromise": True, "returnByValue": True}})
                    async for message in ws:
                        answer = json.loads(message.data)
                        if answer.get("id") == calls:
                            return answer["result"].get("result", {}).get("value")

                for _ in range(240):
                    if await js("!!(window.app && app.graph && app.canvas)"):
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(3)  # the start-up dialogs open after the app
                for path in workflows:
                    await js("document.querySelectorAll('.p-dialog-close-button')"
                             ".forEach(b => b.click()); true")
                    before = set(get(f"{url}/history"))
                    await js(f"app.loadGraphData({open(path).read()}).then(() => true)")
                    saved = await js("JSON.stringify(app.graph.serialize().nodes.map("
                                     "n => [n.id, n.widgets_values]))")
                    await js("app.queuePrompt(0).then(() => true)")
                    for _ in range(600):
                        await asyncio.sleep(0.5)
                        queue = get(f"{url}/queue")
                        if set(get(f"{url}/history")) - before and not (
                                queue["queue_running"] or queue["queue_pending"]):
                            break
                    await asyncio.sleep(1)
                    texts = await js("JSON.stringify(app.graph.nodes.map(n => [n.id, "
                                     "(n.widgets || []).filter(w => w.name === "
                                     "'$$node-text-preview').map(w => w.value)]))")
                    print(json.dumps({"widgets": json.loads(saved), "texts": json.loads(texts),
                                      "prompts": sorted(set(get(f"{url}/history")) - before)}),
                          flush=True)
    finally:
        browser.terminate()
        browser.wait(timeout=30)


asyncio.run(drive())
"""


def _in_the_web_ui(url: str, folder: Path, workflows: list[dict]) -> list[dict]:
    """Each workflow loaded into ComfyUI's web UI (headless Chromium) and run with its Run
    button's call: the widget values it serialised, the texts on its nodes, its prompt ids."""
    paths = []
    for index, workflow in enumerate(workflows):
        paths.append(folder / f"workflow{index}.json")
        paths[-1].write_text(json.dumps(workflow))
    done = subprocess.run([PYTHON, "-c", WEB_DRIVER, url, CHROMIUM, str(_free_port()),
                           str(folder / "profile"), *map(str, paths)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to drive ComfyUI's web UI")
def test_the_load_depth_example_runs_in_the_web_ui_and_load_image_shows_the_warning(
        server, tmp_path):
    """example_workflows/sddr_load_depth.json, on the demo's pair, as a user opens and runs
    it; then the same workflow with Load Image, whose clipped inputs SDDR Refine Depth names
    under itself."""
    url, _ = server
    example = json.loads((REPO / "example_workflows" / "sddr_load_depth.json").read_text())
    for node in example["nodes"]:
        if node["type"] == "SDDRLoadDepth":
            node["widgets_values"][0] = "demo_" + node["widgets_values"][0]
    with_load_image = json.loads(json.dumps(example))
    for node in with_load_image["nodes"]:
        if node["type"] == "SDDRLoadDepth":
            node |= {"type": "LoadImage", "widgets_values": [node["widgets_values"][0], "image"],
                     "outputs": [node["outputs"][0], {"name": "MASK", "type": "MASK",
                                                      "links": [], "slot_index": 1}]}
    runs = _in_the_web_ui(url, tmp_path, [example, with_load_image])
    assert len(runs) == 2 and all(len(run["prompts"]) == 1 for run in runs)
    assert runs[0]["widgets"] == [[node["id"], node["widgets_values"]]
                                  for node in example["nodes"]]
    refine = next(node["id"] for node in example["nodes"] if node["type"] == "SDDRRefineDepth")
    texts = [dict(run["texts"])[refine] for run in runs]
    assert texts[0] == []
    assert texts[1] and texts[1][0].startswith("low_depth: frame 0 has 99.")
    assert "at its maximum value 1" in texts[1][0] and "SDDR Load Depth" in texts[1][0]
    for run in runs:
        result = json.loads(_get(f"{url}/history/{run['prompts'][0]}"))[run["prompts"][0]]
        assert result["status"]["status_str"] == "success", result["status"]
