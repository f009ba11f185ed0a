"""A bounded atheris run of ``tests/fuzz/atheris_parsers.py`` (skipped when atheris is not installed:
``pip install -e '.[fuzz]'``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("atheris_parsers.py")


def test_atheris_finds_no_crash_in_bounded_run(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "-atheris_runs=20000", "-seed=1", "-max_len=400"],
        cwd=tmp_path,  # libFuzzer writes crash-* files into the working directory
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
