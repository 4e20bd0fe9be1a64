"""benchmarks/gpu_checks.sh, the one call a lent GPU gets (issue 28), dry-run on the CPU so its
plumbing does not rot between the sessions that have a GPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_the_gpu_checks_run_dry_on_the_cpu_and_record_every_benchmark(tmp_path):
    env = {**os.environ, "SDDR_CHECK_DEVICE": "cpu", "SDDR_CHECK_QUICK": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_checks.sh"), str(tmp_path),
                           sys.executable], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    reports = [json.loads(line) for line in
               (tmp_path / "gpu_checks.jsonl").read_text().splitlines()]
    checks = [report["check"] for report in reports]
    assert checks == ["one-stage 64 fp32", "one-stage 128 fp32", "one-stage 64 fp32",
                      "two-stage 64 fp32", "memory 4k two-stage fp32", "batch 1 64 fp32",
                      "batch 2 64 fp32"]
    assert all(report["device"] == "cpu" for report in reports)
    assert [r["batch"] for r in reports if r["check"].startswith("batch")] == [1, 2]
    assert all(r["median_seconds"] > 0 for r in reports if r["mode"] == "one-stage")
    assert reports[4]["output_shape"] == [2160, 3840] and reports[4]["peak_rss_mb"] > 0
    log = (tmp_path / "gpu_checks.log").read_text()
    assert "=== environment: exit 0" in log
    assert not (tmp_path / ".report").exists()
