"""Weights files: round trip, atomic saving, clear errors, hf:// references from the cache."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import sddr_core.files.weights as weights_module
from sddr_core import InputError, Refiner, WeightsError, load_refiner
from sddr_core.network import NetworkConfig
from sddr_core.network.model import RefinementNetwork
from tests.tiny import TINY

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _tiny_refiner(seed: int = 0, config: NetworkConfig = TINY) -> Refiner:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = RefinementNetwork(config).eval().to(memory_format=torch.channels_last)
        return Refiner(network, device="cpu")  # as load_refiner builds it, so outputs match


def _pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    low = rng.random((45, 60), dtype=np.float32) + np.linspace(1, 3, 60, dtype=np.float32)
    high = rng.random((135, 180), dtype=np.float32) + np.linspace(1, 3, 180, dtype=np.float32)
    return low, high


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """These tests never touch the network: any attempt is refused and fails the test (it is
    recorded, since the code under test may catch the error it gets)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access is disabled in the tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
    assert attempts == [], "a test tried to use the network"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved tiny refiner and the refiner itself."""
    refiner = _tiny_refiner(seed=1)
    path = refiner.save(tmp_path_factory.mktemp("weights") / "tiny.safetensors")
    return refiner, path


# ------------------------------------------------------------------------------- round trip

def test_save_load_round_trip(saved):
    refiner, path = saved
    assert path.is_file()
    loaded = load_refiner(path, device="cpu")
    assert loaded.config == TINY
    original_state, loaded_state = refiner.network.state_dict(), loaded.network.state_dict()
    assert original_state.keys() == loaded_state.keys()
    assert all(torch.equal(original_state[k], loaded_state[k]) for k in original_state)
    low, high = _pair()
    np.testing.assert_array_equal(loaded.refine(low, high), refiner.refine(low, high))
    # Also by a str path.
    assert load_refiner(str(path), device="cpu").config == TINY


def test_file_metadata_rebuilds_the_architecture(saved):
    refiner, path = saved
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        keys = set(handle.keys())
    assert metadata["format"] == "sddr-refiner"
    assert metadata["format_version"] == "2"
    config = NetworkConfig.from_json(metadata["config"])
    assert config == TINY
    rebuilt = RefinementNetwork(config).state_dict()
    assert keys == set(rebuilt)
    tensors = load_file(str(path))
    assert all(tensors[k].shape == rebuilt[k].shape for k in rebuilt)
    assert all(t.dtype == torch.float32 for t in tensors.values())


def test_save_creates_folders_and_returns_path(tmp_path):
    target = tmp_path / "a" / "b" / "model.safetensors"
    assert _tiny_refiner().save(target) == target
    assert target.is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.safetensors"]


def test_save_overwrites_an_older_file(tmp_path):
    path = tmp_path / "model.safetensors"
    _tiny_refiner(seed=1).save(path)
    _tiny_refiner(seed=2).save(path)
    loaded = load_refiner(path, device="cpu").network.state_dict()
    expected = _tiny_refiner(seed=2).network.state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


# ------------------------------------------------------------------------------ atomic save

def test_failed_save_leaves_old_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    _tiny_refiner(seed=1).save(path)
    before = path.read_bytes()

    def half_written(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(weights_module, "save_file", half_written)
    with pytest.raises(InputError, match="disk full"):
        _tiny_refiner(seed=2).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_real_write_failure_is_an_input_error_naming_the_file(tmp_path):
    """A file-size limit makes safetensors' own writer fail as a full disk does: it raised
    SafetensorError, which is no OSError, so `export -o` on a full disk gave a traceback."""
    script = ("import resource, sys\n"
              "from sddr_core.network.model import RefinementNetwork\n"
              "from sddr_core.files.weights import save_network\n"
              "from tests.tiny import TINY\n"
              "network = RefinementNetwork(TINY)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
              "try:\n"
              "    save_network(network, sys.argv[1])\n"
              "except Exception as e:\n"
              "    print(type(e).__name__, e)\n")
    out = tmp_path / "weights.safetensors"
    result = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True,
                            text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.startswith(f"InputError cannot write output file '{out}': "
                                    "safetensors: "), result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


def test_save_of_unsaveable_network_leaves_old_file_untouched(tmp_path):
    """safetensors refuses tensors that share memory: the real writer fails part-way."""
    path = tmp_path / "model.safetensors"
    _tiny_refiner(seed=1).save(path)
    before = path.read_bytes()

    tied = _tiny_refiner(seed=2)
    decoder = tied.network.decoder
    assert decoder.aux_half.conv.bias.shape == decoder.aux_quarter.conv.bias.shape
    decoder.aux_half.conv.bias = decoder.aux_quarter.conv.bias  # two names, one tensor
    with pytest.raises(Exception):  # noqa: B017 (safetensors' own error type)
        tied.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


# ---------------------------------------------------------------------------------- errors

def _assert_weights_error(reference, *fragments: str) -> WeightsError:
    with pytest.raises(WeightsError) as info:
        load_refiner(reference, device="cpu")
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    _assert_weights_error(path, str(path), "no such file")


def test_folder(tmp_path):
    _assert_weights_error(tmp_path, str(tmp_path), "folder")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    """`safe_open` on a FIFO waits for a writer: forever."""
    fifo = tmp_path / "weights.safetensors"
    os.mkfifo(fifo)
    _assert_weights_error(fifo, str(fifo), "not a regular file")


def test_random_bytes(tmp_path):
    path = tmp_path / "random.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    _assert_weights_error(path, str(path), "not a readable safetensors file")


def test_small_header_garbage(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes((20).to_bytes(8, "little") + b"{this is not json!!}")
    _assert_weights_error(path, str(path), "not a readable safetensors file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    _assert_weights_error(path, str(path))


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file(saved, tmp_path, keep):
    _, good = saved
    data = good.read_bytes()
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(data[: int(len(data) * keep)])
    _assert_weights_error(path, str(path), "not a readable safetensors file")


def test_safetensors_of_another_model(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(3, 4)}, str(path))
    _assert_weights_error(path, str(path), "not an sddr refiner")
    with_metadata = tmp_path / "other_meta.safetensors"
    save_file({"fc.weight": torch.zeros(3, 4)}, str(with_metadata), metadata={"format": "pt"})
    _assert_weights_error(with_metadata, str(with_metadata), "not an sddr refiner")


def test_our_format_without_config(saved, tmp_path):
    _, good = saved
    path = tmp_path / "noconfig.safetensors"
    save_file(load_file(str(good)), str(path), metadata={"format": "sddr-refiner"})
    _assert_weights_error(path, str(path), "config")


def test_config_that_does_not_match_the_tensors(saved, tmp_path):
    _, good = saved
    tensors = load_file(str(good))
    path = tmp_path / "mismatch.safetensors"
    other = dataclasses.replace(TINY, cross_attention_layers=2, embed_dims=(8, 16, 16, 64))
    save_file(tensors, str(path), metadata={
        "format": "sddr-refiner", "format_version": "1", "config": other.to_json(),
    })
    error = _assert_weights_error(path, str(path), "another architecture")
    assert "missing" in str(error) and "wrong shape" in str(error)


def test_missing_tensor(saved, tmp_path):
    _, good = saved
    tensors = load_file(str(good))
    del tensors[sorted(tensors)[0]]
    path = tmp_path / "missing.safetensors"
    save_file(tensors, str(path), metadata={"format": "sddr-refiner", "config": TINY.to_json()})
    _assert_weights_error(path, str(path), "another architecture", "missing")


def _resave_with_config(good, path, config_text: str):
    """The good file's tensors under a different architecture config."""
    save_file(load_file(str(good)), str(path),
              metadata={"format": "sddr-refiner", "config": config_text})
    return path


def _tiny_fields_with(**changes) -> str:
    fields = json.loads(TINY.to_json())
    fields.update(changes)
    return json.dumps(fields)


def test_config_with_unknown_field(saved, tmp_path):
    path = _resave_with_config(saved[1], tmp_path / "future.safetensors",
                               _tiny_fields_with(future_option=1))
    _assert_weights_error(path, str(path), "future_option")


def test_config_with_invalid_values(saved, tmp_path):
    path = _resave_with_config(saved[1], tmp_path / "invalid.safetensors",
                               _tiny_fields_with(stem_channels=[4, 8]))
    _assert_weights_error(path, str(path), "invalid")


@pytest.mark.parametrize("changes, words", [
    ({"depths": [1, 1, 1, 100000]}, "'depths': must be 4 integers from 0 to 64, got (1, 1, 1, "),
    ({"embed_dims": [32, 64, 160, 1 << 20], "num_heads": [1, 1, 1, 1]},
     "'embed_dims': must be 4 integers from 1 to 1024"),
    ({"cross_attention_layers": 10**6}, "'cross_attention_layers': must be an integer from 0 "
                                        "to 64"),
    ({"mlp_ratio": 4096}, "'mlp_ratio': must be an integer from 1 to 16"),
    ({"depths": [1] * 10**5}, "got (1, 1, 1, 1, 1, 1, ...)"),
])
def test_a_config_beyond_any_real_network_is_refused_at_once(saved, tmp_path, changes, words):
    """A weights file's config is built before its tensors are compared: 100,000 blocks once
    hung, a 16 TB network failed in the allocator."""
    path = _resave_with_config(saved[1], tmp_path / "huge.safetensors",
                               _tiny_fields_with(**changes))
    error = _assert_weights_error(path, str(path), words)
    assert len(str(error)) < 400


def test_a_network_the_allocator_refuses_is_a_weights_error(saved, tmp_path, monkeypatch):
    """Within the limits a network may still not fit this machine: the allocator's
    RuntimeError (simulated; a real one needs that much memory) names the file."""
    def refused(config):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:116] DefaultCPUAllocator: not "
                           "enough memory: you tried to allocate 17592186044416 bytes.")

    monkeypatch.setattr(weights_module, "RefinementNetwork", refused)
    _assert_weights_error(saved[1], str(saved[1]), "asks for more memory than there is",
                          "17592186044416 bytes")


def _resave(good, path, tensors=None, **metadata):
    """The good file's tensors (or `tensors`) with this metadata, as a real safetensors file."""
    save_file(tensors or load_file(str(good)), str(path),
              metadata={"format": "sddr-refiner", **metadata})
    return path


def test_version_1_file_with_max_side_still_loads(saved, tmp_path):
    """Files of the first release carry `max_side` in their config; it is dropped."""
    refiner, good = saved
    path = _resave(good, tmp_path / "v1.safetensors", format_version="1",
                   config=_tiny_fields_with(max_side=256))
    loaded = load_refiner(path, device="cpu")
    assert loaded.config == TINY and loaded.max_side == 2048
    low, high = _pair()
    np.testing.assert_array_equal(loaded.refine(low, high), refiner.refine(low, high))
    # Without a format_version at all (read as version 1), and with the legacy max_side 0.
    path = _resave(good, tmp_path / "noversion.safetensors", config=_tiny_fields_with(max_side=0))
    assert load_refiner(path, device="cpu").config == TINY


def test_file_without_a_newer_field_loads_with_its_default(saved, tmp_path):
    fields = json.loads(TINY.to_json())
    del fields["level_embedding"]  # as a file written before the field existed
    path = _resave(saved[1], tmp_path / "older.safetensors", format_version="2",
                   config=json.dumps(fields))
    assert load_refiner(path, device="cpu").config == TINY


def test_newer_format_version_is_refused(saved, tmp_path):
    path = _resave(saved[1], tmp_path / "v3.safetensors", format_version="3",
                   config=TINY.to_json())
    _assert_weights_error(path, str(path), "format version '3'")


@pytest.mark.parametrize(("field", "value"), [
    ("num_heads", [1, 1, 1, 5]),  # the tensors fit: head counts do not change shapes
    ("upsample_mode", "trilinear"),
    ("cross_attention_heads", 3),
    ("drop_path", -0.5),
])
def test_config_whose_tensors_fit_but_values_are_invalid(saved, tmp_path, field, value):
    path = _resave(saved[1], tmp_path / "inconsistent.safetensors", format_version="2",
                   config=_tiny_fields_with(**{field: value}))
    _assert_weights_error(path, str(path), f"'{field}'")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_tensor_is_refused_naming_it(saved, tmp_path, bad):
    tensors = load_file(str(saved[1]))
    name = "decoder.ups.0.conv.weight"
    tensors[name].view(-1)[3] = bad
    path = _resave(saved[1], tmp_path / "nan.safetensors", tensors=tensors,
                   format_version="2", config=TINY.to_json())
    _assert_weights_error(path, str(path), name, "NaN or infinity")


@pytest.mark.parametrize("max_side", [0, -1, 7, 100.5, "2048"])
def test_invalid_max_side_is_refused(saved, max_side):
    with pytest.raises(InputError, match="max_side"):
        load_refiner(saved[1], device="cpu", max_side=max_side)


def test_max_side_is_a_refiner_setting(saved):
    loaded = load_refiner(saved[1], device="cpu", max_side=128)
    assert loaded.max_side == 128
    assert loaded.working_size(1000, 500) == (128, 64)
    assert not hasattr(loaded.config, "max_side")


def test_config_that_is_not_an_object(saved, tmp_path):
    path = _resave_with_config(saved[1], tmp_path / "listconfig.safetensors", "[]")
    _assert_weights_error(path, str(path))


def test_default_weights_are_bundled_small_and_offline(monkeypatch):
    """The shipped file: found by name with no network, an sddr refiner, within 25 MB."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "socket", _no_network)
    bundled = weights_module.BUNDLED_DIR / weights_module.BUNDLED["default"]
    assert bundled.is_file() and bundled.stat().st_size <= 25 * 2**20
    refiner = load_refiner(device="cpu")
    low = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48)
    refined = refiner.refine(low, low + 0.01, out_size=(64, 96))
    assert refined.shape == (64, 96) and np.isfinite(refined).all()


def test_missing_bundled_file_says_the_install_is_broken(monkeypatch, tmp_path):
    monkeypatch.setattr(weights_module, "BUNDLED_DIR", tmp_path)
    _assert_weights_error("default", "missing from this installation", "reinstall")
    with pytest.raises(WeightsError, match="reinstall"):
        load_refiner()


def _no_network(*args, **kwargs):
    raise AssertionError("the bundled weights must load without opening a socket")


# --------------------------------------------------------------------------------- hf://

@pytest.fixture
def hf_cache(tmp_path, monkeypatch, saved):
    """An offline Hugging Face cache holding owner/repo at COMMIT (refs/main → COMMIT)."""
    import huggingface_hub.constants as hf_constants

    _, good = saved
    cache = tmp_path / "hub"
    repo = cache / "models--owner--repo"
    snapshot = repo / "snapshots" / COMMIT
    (snapshot / "sub" / "dir").mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(good.read_bytes())
    (snapshot / "sub" / "dir" / "model.safetensors").write_bytes(good.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads both at import time; hf_hub_download reads these attributes at
    # call time (cache_dir=None → constants.HF_HUB_CACHE; offline → constants.HF_HUB_OFFLINE).
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.mark.parametrize(
    "reference",
    [
        f"hf://owner/repo/model.safetensors@{COMMIT}",
        "hf://owner/repo/model.safetensors@main",
        f"hf://owner/repo/sub/dir/model.safetensors@{COMMIT}",
    ],
)
def test_hf_reference_from_offline_cache(hf_cache, saved, reference):
    refiner, _ = saved
    loaded = load_refiner(reference, device="cpu")
    assert loaded.config == TINY
    low, high = _pair()
    np.testing.assert_array_equal(loaded.refine(low, high), refiner.refine(low, high))


@pytest.mark.parametrize(
    "reference",
    [
        "hf://owner/repo/other.safetensors@" + COMMIT,
        "hf://owner/other-repo/model.safetensors@" + COMMIT,
        "hf://owner/repo/model.safetensors@" + "f" * 40,
        "hf://owner/repo/model.safetensors@v1.0",
    ],
)
def test_hf_reference_not_in_offline_cache(hf_cache, reference):
    _assert_weights_error(reference, reference, "not in the local Hugging Face cache")


@pytest.mark.parametrize(
    "reference",
    [
        "hf://owner/repo/model.safetensors",  # no revision
        "hf://owner/repo/model.safetensors@",  # empty revision
        "hf://owner/model.safetensors@main",  # too few parts
        "hf://owner@main",
        "hf://owner//model.safetensors@main",  # empty part
        "hf://@main",
    ],
)
def test_malformed_hf_reference(hf_cache, reference):
    _assert_weights_error(reference, reference, "hf://owner/repo/file.safetensors@revision")
