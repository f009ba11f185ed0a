"""bench/run.py --quick: the one benchmark runner produces every target's row with a number.

Bounded smoke run (small sizes, about a minute): it checks the harness, not the targets, which
are judged on the full run (``make bench``) on a quiet machine.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import TARGETS, write_section

ROOT = Path(__file__).resolve().parents[2]
# Rows that are a difference of two medians (gated minus ungated): a quick run on a busy
# machine can measure one at or below zero (bench/run.py's MIDDLEWARE_ADDED).
DIFFERENCES = {("#8", "middleware added per gated request")}


@pytest.mark.slow
@pytest.mark.timeout(900)  # the quick run takes ~1 minute; flock may wait for another benchmark
def test_quick_run_produces_every_target_row_with_a_number(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "rows.json"
    # One benchmark at a time on a shared machine (bench/RESULTS.md's convention).
    lock = ["flock", "/tmp/bench.lock"] if shutil.which("flock") else []
    proc = subprocess.run(
        [
            *lock,
            sys.executable,
            "bench/run.py",
            "--quick",
            "--json",
            str(out),
            "--markdown",
            str(tmp_path / "R.md"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = {(r["issue"], r["target_name"]): r for r in data["rows"]}
    assert set(rows) == {(t.issue, t.name) for t in TARGETS}
    for key, row in rows.items():
        assert isinstance(row["measured"], float | int) and math.isfinite(row["measured"]), (key, row["note"])
        if key not in DIFFERENCES:
            assert row["measured"] > 0, key
    # Ratios to the two baselines are present where they apply.
    assert rows[("#3", "warm check p50")]["vs_handrolled"] > 0
    assert rows[("#3", "warm check p50")]["vs_sdk"] > 0
    assert {"cpus", "cpu_model", "python", "postgres", "redis"} <= set(data["machine"])
    table = (tmp_path / "R.md").read_text()
    assert all(t.name in table for t in TARGETS)
    assert table.count("| #") == len(TARGETS)


def test_results_section_is_replaced_in_place(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nintro\n\n## Engine\n\nold text\n")
    write_section(path, "first table\n")
    write_section(path, "second table\n")
    text = path.read_text()
    assert text.count("bench/run.py: begin") == 1 and "second table" in text and "first table" not in text
    assert text.startswith("# Benchmark results\n") and "## Engine\n\nold text" in text


def test_a_cost_measured_below_zero_is_read_and_gets_no_ratio() -> None:
    """The middleware's added cost is a difference of medians: a noisy quick run can print
    it below zero, which must still be read (not fail the group) and compare to nothing."""
    from bench.run import MIDDLEWARE_ADDED, grab, ratio

    line = "added to a Starlette route by gating it:             -0.31 us/request   (target <= 10 us)"
    assert grab(MIDDLEWARE_ADDED, line) == -0.31
    assert ratio(-0.31, 2.0, False) is None
    assert ratio(0.5, 2.0, False) == 4.0
