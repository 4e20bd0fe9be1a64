"""Hostile arguments and environments for `sddr`: each ends in `sddr: error: …` with status 2
(130 after Ctrl-C, 143 after SIGTERM), is refused before any model runs where it can be, and
leaves no partial file behind."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from sddr_core.cli.main import main
from sddr_core.errors import InputError
from sddr_core.files import depth_io
from sddr_core.files.depth_io import read_depth
from sddr_core.inference.refiner import Refiner
from sddr_core.inference.windows import passes
from tests.test_cli import write_pair

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def pair(tmp_path):
    return write_pair(tmp_path)


@pytest.fixture()
def refine_calls(monkeypatch):
    """Records every `Refiner.refine` call, so a test can say the refusal came first."""
    calls = []
    original = Refiner.refine

    def recorded(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Refiner, "refine", recorded)
    return calls


def run_pair(weights, pair, out, *extra):
    low, high = pair[:2]
    return main(["refine", "--low", str(low), "--high", str(high), "-o", str(out),
                 "--weights", weights, "--device", "cpu", *extra])


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------- silent wrong results

@pytest.mark.parametrize("suffix", [".npy", ".png"])
def test_extreme_finite_range_is_refused_or_refined_never_written_as_nan(
        weights, tmp_path, capsys, suffix):
    """Values near ±3e38 once overflowed the normalisation into an all-NaN map (an all-zero
    PNG) with status 0."""
    ramp = np.linspace(-3e38, 3e38, 48 * 64, dtype=np.float32).reshape(48, 64)
    low, high = tmp_path / "low.npy", tmp_path / "high.npy"
    np.save(low, ramp[::2, ::2].copy())
    np.save(high, ramp)
    out = tmp_path / f"out{suffix}"
    status = run_pair(weights, (low, high), out)
    if status == 2:
        assert capsys.readouterr().err.startswith("sddr: error: ")
        assert files(tmp_path) == ["high.npy", "low.npy"]  # this test's own pair
    else:
        assert status == 0
        refined = read_depth(out)
        assert np.isfinite(refined).all() and refined.max() > refined.min()


# ------------------------------------------------------------ arguments checked up front

@pytest.mark.parametrize("threads", ["-3", "0", "20000", "99999", "two"])
def test_threads_outside_the_machine_range_are_refused(tmp_path, capsys, threads):
    assert main(["--threads", threads, "info"]) == 2
    err = capsys.readouterr().err
    assert "sddr: error: argument --threads:" in err and threads in err


@pytest.mark.parametrize("size", ["100000x100000", "99999999999999999999x2", "0x5", "-3x5",
                                  "5", "axb", "2x3x4"])
def test_out_size_is_checked_before_the_refine(weights, pair, tmp_path, capsys, refine_calls,
                                               size):
    assert run_pair(weights, pair, tmp_path / "o.npy", "--out-size", size) == 2
    err = capsys.readouterr().err
    assert "sddr: error: argument --out-size:" in err and "out_size" not in err
    assert refine_calls == [] and not (tmp_path / "o.npy").exists()


@pytest.mark.parametrize("args", [["--size", "-5"], ["--size", "0"], ["--size", "100000"],
                                  ["--repeats", "0"], ["--mode", "two-stage", "--steps", "0"],
                                  ["--batch", "0"], ["--batch", "257"]])
def test_bench_ranges_are_checked(capsys, args):
    assert main(["bench", *args]) == 2
    assert f"sddr: error: argument {args[-2]}:" in capsys.readouterr().err


@pytest.mark.parametrize("other", [["--mode", "two-stage"], ["--clip"], ["--throughput"],
                                   ["--photo"], ["--snap-edges"]])
def test_bench_batch_is_refused_where_it_times_nothing(capsys, other):
    assert main(["bench", "--batch", "2", "--size", "64", *other]) == 2
    assert "sddr: error: --" in capsys.readouterr().err


def test_too_many_steps_are_refused_with_the_pass_count(weights, pair, tmp_path, capsys):
    assert main(["refine", "photo.png", "-o", str(tmp_path), "--mode", "two-stage",
                 "--steps", "100", "--weights", weights]) == 2
    err = capsys.readouterr().err
    assert "argument --steps: 100 would run 348,551 network passes" in err
    assert main(["refine", "photo.png", "-o", str(tmp_path), "--steps", "99999999999"]) == 2
    assert f"would run over {passes(1000):,} network passes" in capsys.readouterr().err


@pytest.mark.parametrize("output, format, message", [
    ("out.jpg", None, "unsupported extension '.jpg'"),
    ("out.npy", "png16", "needs the extension .png"),
    ("folder.png", None, "a folder of that name is in the way"),
    ("afile/sub/out.png", None, "output folder '{tmp}/afile': it is a file, not a folder"),
])
def test_output_name_and_format_are_checked_before_the_refine(
        weights, pair, tmp_path, capsys, refine_calls, output, format, message):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "afile").write_text("a file")
    extra = ["--format", format] if format else []
    assert run_pair(weights, pair, tmp_path / output, *extra) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert refine_calls == []


def test_a_directory_as_low_is_called_a_directory(weights, pair, tmp_path, capsys):
    (tmp_path / "maps").mkdir()
    assert run_pair(weights, (tmp_path / "maps", pair[1]), tmp_path / "o.npy") == 2
    err = capsys.readouterr().err
    assert f"cannot read depth map '{tmp_path / 'maps'}': is a directory" in err
    assert "unsupported extension" not in err


def test_a_fifo_as_input_is_refused_without_blocking(weights, pair, tmp_path, capsys):
    fifo = tmp_path / "low-fifo.npy"
    os.mkfifo(fifo)  # opening it to read would block until a writer comes: never
    assert run_pair(weights, (fifo, pair[1]), tmp_path / "o.npy") == 2
    assert "not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("hard_link", [False, True])
@pytest.mark.parametrize("option", ["--low", "--high"])
def test_output_that_is_an_input_is_refused(weights, pair, tmp_path, capsys, option,
                                            hard_link):
    target = Path(pair[0] if option == "--low" else pair[1])
    before = target.read_bytes()
    out = target
    if hard_link:  # another name of the same file: `-o` names it, not the input
        out = tmp_path / f"link{target.suffix}"
        out.hardlink_to(target)
    assert run_pair(weights, pair, out) == 2
    assert f"output '{out}' is the {option} input itself" in capsys.readouterr().err
    assert target.read_bytes() == before


def _bomb_png(path: Path, side: int) -> None:
    """A valid side×side 8-bit gray PNG of zeros: a few hundred kB that decode to side² bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    packer, row = zlib.compressobj(9), bytes(side + 1)  # filter byte 0, then the pixels
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side,
                                                                           8, 0, 0, 0, 0))
                     + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_decompression_bomb_is_refused_before_it_is_decoded(weights, tmp_path, suffix):
    """A 16000×16000 PNG of 250 kB: a raw allocation error after 78 s before the pixel budget
    (PNG: checked from its header; JPEG: by OpenCV, with the budget sddr gives it). A real
    `sddr` process, so OpenCV is loaded as it is for users."""
    bomb = tmp_path / f"bomb{suffix}"
    if suffix == ".png":
        _bomb_png(bomb, 16000)
    else:
        cv2.imwrite(str(bomb), np.zeros((12000, 12000), np.uint8))
    assert bomb.stat().st_size < 3_000_000
    command = [sys.executable, "-m", "sddr_core.cli.main", "refine", "--low", str(bomb),
               "--high", str(bomb), "-o", str(tmp_path / "out.png"), "--weights", weights]
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items()
                                 if k != "OPENCV_IO_MAX_IMAGE_PIXELS"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"sddr: error: cannot read depth map '{bomb}': it has more than 134,217,728 pixels, "
        "the most sddr reads (it would exhaust memory); scale it down first")
    assert time.monotonic() - started < 60


# -------------------------------------------------------------------- failures while writing

@pytest.mark.parametrize("suffix", [".png", ".npy", ".pfm", ".tiff", ".exr"])
def test_full_disk_while_writing_is_a_clean_error(weights, pair, tmp_path, capsys, monkeypatch,
                                                  suffix):
    out = tmp_path / f"out{suffix}"
    out.write_bytes(b"earlier result")
    fmt = depth_io.format_for_path(out)

    def disk_full(tmp, arr):
        tmp.write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setitem(depth_io._WRITERS, fmt, disk_full)
    assert run_pair(weights, pair, out) == 2
    err = capsys.readouterr().err
    assert f"sddr: error: cannot write output file '{out}': No space left on device" in err
    assert out.read_bytes() == b"earlier result"
    assert files(tmp_path) == sorted(["low.npy", "high.pfm", out.name])


def test_every_writer_reports_a_real_write_failure_as_an_input_error(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes the real writers fail as a full disk would."""
    script = (
        "import resource, sys, numpy as np\n"
        "from sddr_core.files.depth_io import write_depth\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "depth = np.random.default_rng(0).random((64, 64), dtype=np.float32)\n"
        "for suffix in ('.png', '.npy', '.pfm', '.tiff', '.exr'):\n"
        "    try:\n"
        "        write_depth(sys.argv[1] + '/out' + suffix, depth)\n"
        "        print(suffix, 'written')\n"
        "    except Exception as e:\n"
        "        print(suffix, type(e).__name__, e)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert len(lines) == 5, result.stderr
    for line in lines:
        assert " InputError cannot " in line, line
    assert files(tmp_path) == []


def test_ctrl_c_exits_130_and_leaves_no_partial_file(weights, pair, tmp_path, capsys,
                                                     monkeypatch):
    out = tmp_path / "out.npy"

    def interrupted(tmp, arr):
        tmp.write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setitem(depth_io._WRITERS, "npy", interrupted)
    assert run_pair(weights, pair, out) == 130
    assert "sddr: error: interrupted" in capsys.readouterr().err
    assert files(tmp_path) == ["high.pfm", "low.npy"]


def test_sigterm_while_writing_leaves_no_temporary_file(weights, pair, tmp_path):
    """A real `sddr` process, sent SIGTERM while its large EXR is being written."""
    out = tmp_path / "out"
    low, high, _ = pair
    command = [sys.executable, "-m", "sddr_core.cli.main", "refine", "--low", str(low),
               "--high", str(high), "-o", str(out / "big.exr"), "--out-size", "3072x3072",
               "--weights", weights, "--device", "cpu"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".big.tmp-*.exr")) and process.poll() is None:
        assert time.monotonic() < deadline, "no temporary file appeared"
        time.sleep(0.001)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert files(out) == [], err
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "sddr: error: terminated" in err


def test_a_signal_just_after_the_temporary_file_is_created_leaves_nothing(tmp_path,
                                                                           monkeypatch):
    """The SIGTERM test's rare failure: the signal lands right after the temporary file is
    created, before the writer holds it. Simulated by interrupting `os.close` there."""
    from sddr_core.files import atomic

    close = os.close

    def interrupted(fd):
        close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "close", interrupted)
    with pytest.raises(KeyboardInterrupt), atomic.atomic_output(tmp_path / "out.npy"):
        pass
    assert files(tmp_path) == []


def _user_namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "--map-root-user", "--mount", "true"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _user_namespaces_work(),
                    reason="needs `unshare` and user namespaces to mount a read-only folder")
@pytest.mark.parametrize("output", ["out.png", "new/out.npy"])
def test_a_read_only_file_system_names_the_output_not_a_temporary_file(
        weights, pair, tmp_path, output):
    """A real read-only mount (a tmpfs remounted ro, in a user and mount namespace, so it
    fails even for root): the failed temporary file's removal once raised EROFS itself and
    the user read about '.out.tmp-1a2b3c4d.png' instead of their output."""
    low, high, _ = pair
    folder = tmp_path / "read-only"
    folder.mkdir()
    out = folder / output
    script = ('mount -t tmpfs none "$1" && mount -o remount,ro "$1" && shift && '
              'exec "$@"')
    command = ["unshare", "--map-root-user", "--mount", "sh", "-c", script, "sh", str(folder),
               sys.executable, "-m", "sddr_core.cli.main", "refine", "--low", str(low),
               "--high", str(high), "-o", str(out), "--weights", weights, "--device", "cpu"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == {
        "out.png": f"sddr: error: cannot write output file '{out}': Read-only file system",
        "new/out.npy": f"sddr: error: cannot create output folder '{out.parent}' for "
                       f"'{out}': Read-only file system",
    }[output]


def test_a_failed_cleanup_does_not_hide_the_write_error(tmp_path, monkeypatch):
    """The same read-only file system without namespaces: creating the temporary file and
    removing it both fail with EROFS."""
    from sddr_core.files import atomic

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)
    message = f"^cannot write output file '{tmp_path / 'o.npy'}': Read-only file system$"
    with pytest.raises(InputError, match=message), atomic.atomic_output(tmp_path / "o.npy"):
        pytest.fail("the block ran without a temporary file")


def test_a_nul_in_the_output_name_is_an_input_error(tmp_path):
    from sddr_core.files import atomic

    with pytest.raises(InputError, match="its name holds a NUL character"), \
            atomic.atomic_output(tmp_path / "sddr\0depth.png"):
        pytest.fail("the block ran")
    assert files(tmp_path) == []


def test_an_environment_failure_is_one_error_line(weights, pair, tmp_path, capsys, monkeypatch):
    """An OSError from below (a download, a device) ends like every other failure."""
    from sddr_core.batch import work

    def unreachable(*args, **kwargs):
        raise ConnectionError("huggingface.co is unreachable")

    monkeypatch.setattr(work, "load_refiner", unreachable)
    assert run_pair(weights, pair, tmp_path / "o.npy") == 2
    assert capsys.readouterr().err == "sddr: error: huggingface.co is unreachable\n"
