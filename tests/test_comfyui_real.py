"""The node pack inside a real ComfyUI: the contract with its `comfy_api`, and a real server
running a graph. Skipped unless COMFYUI_DIR points at a ComfyUI checkout (docs/comfyui.md,
"Testing against a real ComfyUI"); COMFYUI_PYTHON is the Python that runs it (default: this
one). CPU only: the server runs with --cpu."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sddr_core import InputError
from sddr_core.files.depth_io import read_depth
from sddr_core.maps.inputs import check_pair
from sddr_core.predictors import fetch_command
from sddr_core.predictors.flicker import clip_predictions
from sddr_core.scenes.sequence import render_clip
from tests import comfyui_server
from tests.comfyui_clip_memory import STEADY_MALLOC
from tests.comfyui_server import free_port as _free_port
from tests.comfyui_server import get as _get
from tests.test_predictors import save_tiny_predictor

REPO = Path(__file__).resolve().parent.parent
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)
NODE_IDS = ["SDDRLoadRefiner", "SDDRRefineDepth", "SDDRDepthFromImage", "SDDRDepthEdges",
            "SDDRSaveDepth", "SDDRLoadDepth"]
RUN_S = comfyui_server.RUN_S
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
    comfyui_server.prepare_base(base)
    shutil.copy(weights, base / "models" / "sddr" / "tiny.safetensors")
    save_tiny_predictor(base / "models" / "sddr_predictors", "depth-anything-v2-small")
    _write_depth_png(base / "input" / "low.png", 48, 64)
    _write_depth_png(base / "input" / "high.png", *HIGH_SIZE)
    _write_depth_png(base / "input" / "narrower.png", 96, 120)  # aspect 1.25 vs low's 1.33
    _write_depth_png(base / "input" / "wide.png", 96, 192)  # aspect 2
    for name in ("low", "high"):
        shutil.copy(demo / f"{name}.png", base / "input" / f"demo_{name}.png")
    try:
        process, url = comfyui_server.start(base, COMFYUI_DIR, PYTHON)
    except comfyui_server.ServerError as error:
        pytest.fail(str(error))
    yield url, base
    comfyui_server.stop(process)


def _run(url: str, graph: dict, client_id: str | None = None,
         targets: list[str] | None = None) -> dict:
    try:
        return comfyui_server.run(url, graph, client_id, targets)
    except comfyui_server.ServerError as error:
        pytest.fail(str(error))


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
    image = cv2.imdecode(np.frombuffer(comfyui_server.view(url, saved), np.uint8),
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
                    if event["type"] == "progress":
                        print(json.dumps({"node": event["data"]["node"],
                                          "progress": [event["data"]["value"],
                                                       event["data"]["max"]]}), flush=True)
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


# --------------------------------------------------------- one input rule, leftovers

def test_the_aspect_rule_on_the_server_is_the_cores(server):
    """The core's check_pair decides: a few percent apart is refined with its warning on the
    node; far apart is refused with its message (the node names its inputs)."""
    url, _ = server
    graph = _graph({"class_type": "LoadImage", "inputs": {"image": "low.png"}})
    graph["2"]["inputs"]["image"] = "narrower.png"
    result = _run(url, graph)
    assert result["status"]["status_str"] == "success", result["status"]
    with pytest.warns(UserWarning) as caught:
        check_pair(torch.zeros(1, 48, 64), torch.zeros(1, 96, 120), ("low_depth", "high_depth"))
    assert result["outputs"]["4"]["text"] == [str(caught[0].message)]
    graph["2"]["inputs"]["image"] = "wide.png"
    result = _run(url, graph)
    with pytest.raises(InputError) as refused:
        check_pair(torch.zeros(1, 48, 64), torch.zeros(1, 96, 192), ("low_depth", "high_depth"))
    assert _error(result, "SDDRRefineDepth") == str(refused.value)


def _error(result: dict, node_type: str) -> str:
    [error] = [message for kind, message in result["status"]["messages"]
               if kind == "execution_error"]
    assert error["node_type"] == node_type
    return error["exception_message"].strip()


def test_a_nul_in_the_save_prefix_is_refused_naming_it(server):
    url, _ = server
    graph = _graph({"class_type": "LoadImage", "inputs": {"image": "low.png"}})
    graph["6"]["inputs"]["filename_prefix"] = "sddr/a\0b"
    del graph["5"]
    assert _error(_run(url, graph), "SDDRSaveDepth").startswith(
        "filename_prefix: contains a NUL character")


def test_gray_depth_of_1e7_and_more_is_refined_as_depth(server):
    url, base = server
    ys, xs = np.mgrid[0:96, 0:128].astype(np.float32)
    metric = 1e7 + 3e7 * (ys / 96 + (np.hypot(xs - 64, ys - 48) < 20))
    np.save(base / "input" / "metric_high.npy", metric)
    np.save(base / "input" / "metric_low.npy", metric[::2, ::2].copy())
    graph = _refine_graph("depth", "metric_low.npy", "metric_high.npy", "raw")
    for loader in ("1", "2"):
        graph[loader]["inputs"]["values"] = "raw"
    result = _run(url, graph)
    assert result["status"]["status_str"] == "success", result["status"]
    [exr] = _saved(base, result, "5", "depth_files")
    refined = read_depth(exr)
    assert refined.shape == (96, 128) and 0.9e7 < refined.min() < refined.max() < 7.1e7
    assert _correlation(refined, metric) > 0.9  # the input runs from 1e7 to 7e7


EMPTY_BATCH = """
import sys
import time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import comfy.options
comfy.options.enable_args_parsing(False)
import torch
from comfyui_nodes import nodes
empty, depth = torch.zeros(0, 64, 64, 3), torch.rand(1, 64, 64, 1).expand(-1, -1, -1, 3)
calls = {
    "SDDRRefineDepth": lambda: nodes.SDDRRefineDepth.execute(
        None, empty, depth, 0, 0, "per frame", "auto"),
    "SDDRDepthFromImage": lambda: nodes.SDDRDepthFromImage.execute(
        None, empty, "depth-anything-v2-small", "one-stage", 1, "per frame"),
    "SDDRDepthEdges": lambda: nodes.SDDRDepthEdges.execute(
        None, empty, "depth-anything-v2-small", 1),
}
for name, call in calls.items():
    try:
        call()
    except Exception as error:
        print(name, type(error).__name__, error)
"""


def test_an_empty_batch_is_refused_naming_the_input_under_the_real_comfy_api():
    """No core node makes a 0-frame IMAGE, so the nodes are called in ComfyUI's own Python
    with its comfy_api; the refusal comes before the refiner is used."""
    done = subprocess.run([PYTHON, "-c", EMPTY_BATCH, COMFYUI_DIR, str(REPO)],
                          cwd=COMFYUI_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()[-3:]
    assert lines == [
        "SDDRRefineDepth InputError low_depth: the IMAGE batch is empty (0 frames); connect "
        "a node that gives at least one frame",
        *(f"{node} InputError image: the IMAGE batch is empty (0 frames); connect a node that "
          "gives at least one frame" for node in ("SDDRDepthFromImage", "SDDRDepthEdges"))]


# ------------------------------------------------------------------- example workflows

EXAMPLES = REPO / "example_workflows"
API = {path.stem: json.loads(path.read_text()) for path in (EXAMPLES / "api").glob("*.json")}


def test_loading_the_pack_puts_sddr_demos_sample_scene_into_the_input_folder(server, demo):
    url, base = server
    for name in ("low", "high"):
        np.testing.assert_array_equal(read_depth(base / "input" / f"sddr_sample_{name}.png"),
                                      read_depth(demo / f"{name}.png"))
    np.testing.assert_array_equal(cv2.imread(str(base / "input" / "sddr_sample_photo.png")),
                                  cv2.imread(str(demo / "image.png")))
    info = json.loads(_get(f"{url}/object_info/SDDRLoadDepth"))["SDDRLoadDepth"]
    assert {"sddr_sample_low.png", "sddr_sample_high.png"} <= set(
        info["input"]["required"]["file"][1]["options"])


def test_templates_are_listed_by_title_with_a_square_thumbnail(server):
    """What the web UI's template browser fetches (frontend 1.27: the title is the file's
    name, the thumbnail <name>.jpg beside it)."""
    url, _ = server
    listed = json.loads(_get(f"{url}/api/workflow_templates"))["sddr"]
    assert sorted(listed) == sorted(API) == ["SDDR ControlNet Depth", "SDDR Depth From Image",
                                             "SDDR Refine Depth", "SDDR Video Depth"]
    for name in listed:
        quoted = urllib.parse.quote(name)
        thumbnail = cv2.imdecode(np.frombuffer(
            _get(f"{url}/api/workflow_templates/sddr/{quoted}.jpg"), np.uint8), cv2.IMREAD_COLOR)
        assert thumbnail.shape[0] == thumbnail.shape[1] >= 256, name
        assert json.loads(_get(f"{url}/api/workflow_templates/sddr/{quoted}.json"))["nodes"]


def test_every_api_example_names_real_nodes_inputs_and_link_types(server):
    """Checked against /object_info, as far as ComfyUI's own validation would: also for the
    nodes that cannot run here (a checkpoint and a ControlNet model are not installed)."""
    url, _ = server
    info = json.loads(_get(f"{url}/object_info"))
    for name, graph in API.items():
        for node_id, node in graph.items():
            spec = info[node["class_type"]]["input"]
            known = spec["required"] | spec.get("optional", {})
            assert set(spec["required"]) <= set(node["inputs"]) <= set(known), (name, node_id)
            for key, value in node["inputs"].items():
                if isinstance(value, list):  # a link: [source id, output slot]
                    source = graph[value[0]]["class_type"]
                    assert info[source]["output"][value[1]] == known[key][0], (name, key)


def _saved_sample_depth(base: Path, result: dict) -> np.ndarray:
    """The 16-bit depth an example's SDDR Save Depth (node 5) wrote of the sample scene, after
    checking that the run succeeded."""
    assert result["status"]["status_str"] == "success", result["status"]
    [png] = _saved(base, result, "5", "images")
    saved = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert saved.dtype == np.uint16 and saved.shape == (512, 768)
    return saved


def test_the_refine_depth_example_runs_as_shipped(server, demo):
    """Nothing but this pack: the sample scene's pair, the bundled weights; the saved depth
    is `sddr refine --low --high`'s (near = bright, scaled to 0..1)."""
    url, base = server
    result = _run(url, API["SDDR Refine Depth"])
    saved = _saved_sample_depth(base, result)
    assert abs(_correlation(saved.astype(np.float64), np.load(demo / "cli.npy"))) > 0.99
    assert result["outputs"]["6"]["images"]


def test_the_controlnet_examples_depth_runs_here(server):
    """Its depth branch (preview and 16-bit save) runs; the diffusion half needs a
    checkpoint and a ControlNet model, so only /object_info checks it here."""
    url, base = server
    result = _run(url, API["SDDR ControlNet Depth"], targets=["6", "7"])
    assert result["status"]["status_str"] == "success", result["status"]
    assert set(result["outputs"]) == {"6", "7"}
    assert cv2.imread(str(_saved(base, result, "7", "images")[0]),
                      cv2.IMREAD_UNCHANGED).shape == (512, 768)


def test_the_depth_from_image_example_runs_as_shipped(server):
    """With its predictor in models/sddr_predictors (here a tiny random Depth Anything V2
    Small at the pinned revision: its depth means nothing), the example runs end to end: the
    saved 16-bit depth has the photo's size, both previews are drawn."""
    url, base = server
    result = _run(url, API["SDDR Depth From Image"])
    _saved_sample_depth(base, result)
    assert result["outputs"]["6"]["images"] and result["outputs"]["7"]["images"]


def _listened(url: str, graph: dict) -> tuple[dict, list[dict]]:
    """Run `graph` while a websocket client listens: its history entry and the progress
    and progress-text messages the client got."""
    client_id = str(uuid.uuid4())
    listener = subprocess.Popen([PYTHON, "-c", WS_LISTENER, url, client_id],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        result = _run(url, graph, client_id)
        messages = [json.loads(line) for line in
                    listener.communicate(timeout=RUN_S)[0].splitlines() if line.startswith("{")]
    finally:
        listener.kill()
    return result, messages


def _frames(path: Path) -> np.ndarray:
    """Every frame of a video file, T×H×W×3 uint8 (BGR)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return np.stack(frames)


def test_the_video_example_runs_as_shipped_with_progress_per_frame(server):
    """The sample video (written into input/ when the pack loads) through Load Video → Get
    Video Components → SDDR Depth From Image (clip on; the tiny random predictor) → Create
    Video → Save Video, and SDDR Save Depth's 16-bit frames: as many frames out as in, at the
    video's size, and one progress message per frame on the depth node."""
    url, base = server
    sample = _frames(base / "input" / "sddr_sample_video.mp4")
    assert len(sample) == 16
    result, messages = _listened(url, API["SDDR Video Depth"])
    assert result["status"]["status_str"] == "success", result["status"]
    [video] = result["outputs"]["7"]["images"]
    depth = _frames(base / "output" / video["subfolder"] / video["filename"])
    assert depth.shape == sample.shape
    pngs = _saved(base, result, "5", "images")
    assert len(pngs) == len(sample)
    assert cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    progress = [message["progress"] for message in messages
                if message.get("node") == "4" and "progress" in message]
    assert progress == [[frame, len(sample)] for frame in range(1, len(sample) + 1)]


def _sample_video_depth(clip: bool) -> dict:
    """The sample video's first 8 frames → SDDR Depth From Image (clip on or off, whole
    batch, the bundled refiner) → SDDR Save Depth (npy, as is)."""
    graph = {key: json.loads(json.dumps(node)) for key, node in API["SDDR Video Depth"].items()
             if key in ("1", "2", "3", "4", "5")}
    graph["8"] = {"class_type": "ImageFromBatch",
                  "inputs": {"image": ["2", 0], "batch_index": 0, "length": 8}}
    graph["4"]["inputs"] |= {"image": ["8", 0], "clip": clip}
    graph["5"]["inputs"] |= {"format": "npy", "filename_prefix": f"sddr/video_clip_{clip}"}
    return graph


def _temporal_std(base: Path, result: dict) -> float:
    """Per-pixel standard deviation over the frames SDDR Save Depth (node 5) wrote as npy,
    averaged over the pixels."""
    assert result["status"]["status_str"] == "success", result["status"]
    return float(np.stack([np.load(path) for path in _saved(base, result, "5", "depth_files")]
                          ).std(axis=0).mean())


def test_depth_from_image_flickers_less_with_clip_on_the_still_sample_video(server):
    """A still camera whose frames differ by sensor noise, and the tiny random predictor
    (its depth means nothing, but it answers the noise): the depth's temporal standard
    deviation is lower with clip on."""
    url, base = server
    off, on = (_temporal_std(base, _run(url, _sample_video_depth(clip))) for clip in (False, True))
    assert on < off, (on, off)


def _simulated_still_clip(base: Path, frames: int) -> dict:
    """API graph: a still procedural room's per-frame simulated (low, high) disparity (each
    frame its own scale, shift and errors, as a depth node run frame by frame gives them),
    written as npy into input/, loaded by SDDR Load Depth (0..1) and batched by core Image
    Batch nodes → SDDR Refine Depth (bundled weights, whole batch) → SDDR Save Depth (npy)."""
    clip = render_clip(2, frames=frames, height=192, width=256, motion="static")
    graph = {"3": _refine_graph("depth", "", "", "whole batch")["3"]}
    for index, (low, high) in enumerate(clip_predictions(clip.depth, seed=2, low_resolution=96,
                                                         high_resolution=256)):
        for name, maps in (("low", low), ("high", high)):
            np.save(base / "input" / f"still_{name}_{index}.npy", maps)
            graph[f"{name}{index}"] = {"class_type": "SDDRLoadDepth", "inputs": {
                "file": f"still_{name}_{index}.npy", "values": "0..1"}}
            if index:
                graph[f"{name}_batch{index}"] = {"class_type": "ImageBatch", "inputs": {
                    "image1": [f"{name}_batch{index - 1}" if index > 1 else f"{name}0", 0],
                    "image2": [f"{name}{index}", 0]}}
    graph["4"] = _refine_graph("depth", "", "", "whole batch")["4"]
    graph["4"]["inputs"] |= {"low_depth": [f"low_batch{frames - 1}", 0],
                             "high_depth": [f"high_batch{frames - 1}", 0]}
    graph["5"] = {"class_type": "SDDRSaveDepth", "inputs": {
        "depth": ["4", 0], "filename_prefix": "sddr/still", "format": "npy", "scaling": "as is"}}
    return graph


def test_refine_depth_flickers_less_with_clip_on_a_still_simulated_clip(server):
    """Simulated inputs of a still room (decision 232's flicker): with clip on, the refined
    depth's temporal standard deviation is under 0.7 × that with clip off (the core's
    benchmark measured 0.39× on still clips, docs/video.md)."""
    url, base = server
    graph = _simulated_still_clip(base, 8)
    spread = {}
    for clip in (False, True):
        graph["4"]["inputs"]["clip"] = clip
        spread[clip] = _temporal_std(base, _run(url, graph))
    assert spread[True] < 0.7 * spread[False], spread


@pytest.mark.parametrize("node", ["refine", "image"])
def test_clip_mode_keeps_nothing_per_frame_but_the_output_with_real_comfyui(node):
    """tests/comfyui_clip_memory.py in ComfyUI's Python with its real modules (the CPU, as
    the server runs), 20 frames at 192×256: while the frames are refined, the resident size
    grows by the output IMAGE's frames and by less than half a depth map more per frame."""
    done = subprocess.run([PYTHON, "-m", "tests.comfyui_clip_memory", node, "20", COMFYUI_DIR],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=os.environ | STEADY_MALLOC)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["growth"] < 0.5 * measured["frame"], measured


# ------------------------------------------------------------------------- the web UI

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WEB_DRIVER = """
import asyncio, json, subprocess, sys, time, urllib.request
import aiohttp

url, chromium, port, profile, plan = sys.argv[1:]


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
                for path, queue_it in json.load(open(plan)):
                    await js("document.querySelectorAll('.p-dialog-close-button')"
                             ".forEach(b => b.click()); true")
                    before = set(get(f"{url}/history"))
                    await js(f"app.loadGraphData({open(path).read()}).then(() => true)")
                    saved = await js("JSON.stringify(app.graph.serialize().nodes.map("
                                     "n => [n.id, n.widgets_values]))")
                    api = await js("app.graphToPrompt().then(p => JSON.stringify(p.output))")
                    if not queue_it:
                        print(json.dumps({"widgets": json.loads(saved), "api": json.loads(api)}),
                              flush=True)
                        continue
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
                    print(json.dumps({"widgets": json.loads(saved), "api": json.loads(api),
                                      "texts": json.loads(texts),
                                      "prompts": sorted(set(get(f"{url}/history")) - before)}),
                          flush=True)
    finally:
        browser.terminate()
        browser.wait(timeout=30)


asyncio.run(drive())
"""


def _in_the_web_ui(url: str, folder: Path, workflows: list[tuple[dict, bool]]) -> list[dict]:
    """Each workflow loaded into ComfyUI's web UI (headless Chromium) and, where its flag is
    set, run with its Run button's call: the widget values it serialised, the API-format
    graph it makes, and for a run the texts on its nodes and its prompt ids."""
    plan = []
    for index, (workflow, queue_it) in enumerate(workflows):
        path = folder / f"workflow{index}.json"
        path.write_text(json.dumps(workflow))
        plan.append((str(path), queue_it))
    (folder / "plan.json").write_text(json.dumps(plan))
    done = subprocess.run([PYTHON, "-c", WEB_DRIVER, url, CHROMIUM, str(_free_port()),
                           str(folder / "profile"), str(folder / "plan.json")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _saved_before_clip(workflow: dict) -> dict:
    """`workflow` as the web UI saved it before SDDR Refine Depth and SDDR Depth From Image had
    their last widget, `clip` (off in every example but the video one)."""
    old = json.loads(json.dumps(workflow))
    for node in old["nodes"]:
        if node["type"] in ("SDDRRefineDepth", "SDDRDepthFromImage"):
            assert node["widgets_values"].pop() is False
    return old


def _graph_of(api: dict) -> dict:
    """An API-format graph without the titles (`_meta`), which only label nodes."""
    return {node_id: {"class_type": node["class_type"], "inputs": node["inputs"]}
            for node_id, node in api.items()}


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to drive ComfyUI's web UI")
def test_examples_load_in_the_web_ui_as_their_api_files_and_refine_depth_runs(server, tmp_path):
    """Every example_workflows/*.json loads in the web UI, serialises back to its own widget
    values and makes exactly its example_workflows/api/ graph; SDDR Refine Depth (the one
    needing nothing else) runs to success from the sample scene with no warning; with Load
    Image in place of SDDR Load Depth the warning is drawn under SDDR Refine Depth. Each
    example as saved before the clip option existed (its widget values one shorter) loads to
    the same values, clip off, and makes the same graph."""
    url, _ = server
    examples = {path.stem: json.loads(path.read_text()) for path in EXAMPLES.glob("*.json")}
    with_load_image = json.loads(json.dumps(examples["SDDR Refine Depth"]))
    for node in with_load_image["nodes"]:
        if node["type"] == "SDDRLoadDepth":
            node |= {"type": "LoadImage", "widgets_values": [node["widgets_values"][0], "image"],
                     "outputs": [node["outputs"][0], {"name": "MASK", "type": "MASK",
                                                      "links": [], "slot_index": 1}]}
    names = sorted(examples)
    before_clip = [name for name in names if name != "SDDR Video Depth"]
    runs = _in_the_web_ui(url, tmp_path, [(examples[name], name == "SDDR Refine Depth")
                                          for name in names] + [(with_load_image, True)]
                          + [(_saved_before_clip(examples[name]), False) for name in before_clip])
    assert len(runs) == 2 * len(names)
    for name, run in zip(before_clip, runs[len(names) + 1:], strict=True):
        assert run["widgets"] == [[node["id"], node["widgets_values"]]
                                  for node in examples[name]["nodes"]], name
        assert _graph_of(run["api"]) == _graph_of(API[name]), name
    for name, run in zip(names, runs, strict=False):
        assert run["widgets"] == [[node["id"], node["widgets_values"]]
                                  for node in examples[name]["nodes"]], name
        assert _graph_of(run["api"]) == _graph_of(API[name]), name
    ran = [run for run in runs if "prompts" in run]
    assert len(ran) == 2 and all(len(run["prompts"]) == 1 for run in ran)
    refine = next(node["id"] for node in examples["SDDR Refine Depth"]["nodes"]
                  if node["type"] == "SDDRRefineDepth")
    texts = [dict(run["texts"])[refine] for run in ran]
    assert texts[0] == []
    assert texts[1] and texts[1][0].startswith("low_depth: frame 0 has 99.")
    assert "at its maximum value 1" in texts[1][0] and "SDDR Load Depth" in texts[1][0]
    for run in ran:
        result = json.loads(_get(f"{url}/history/{run['prompts'][0]}"))[run["prompts"][0]]
        assert result["status"]["status_str"] == "success", result["status"]
