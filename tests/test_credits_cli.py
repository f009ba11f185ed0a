"""``syncd credits grant / list / zero-out`` in process, on the demo catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncd.cli import main

from .cli_helpers import ROOT, syncd_env


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, object]], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def test_grant_list_and_zero_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in syncd_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert main(["catalog", "apply", str(ROOT / "config" / "catalog.toml")]) == 0
    from syncd.config import load_settings
    from syncd.db import make_engine, session_scope
    from syncd.services.companies import upsert_company

    engine = make_engine(load_settings(None).database_url)
    with session_scope(engine) as session:
        upsert_company(session, keys={"account": "acme"}, name="Acme")
    engine.dispose()
    capsys.readouterr()

    code, (granted,), _ = _run(
        capsys, "credits", "grant", "account=acme", "ai-credits", "250", "--reason", "purchased"
    )
    assert code == 0 and (granted["reason"], granted["amount"], granted["remaining"]) == (
        "purchased",
        250,
        250,
    )
    code, rows, _ = _run(capsys, "credits", "list", "account=acme")
    assert code == 0 and sorted(r["reason"] for r in rows) == ["plan", "purchased"]
    code, (zeroed,), _ = _run(capsys, "credits", "zero-out", str(granted["id"]))
    assert code == 0 and zeroed["remaining"] == 0 and zeroed["zeroed_at"]

    # Bad input: a clear message, a non-zero exit, nothing written.
    code, _, err = _run(capsys, "credits", "zero-out", str(granted["id"]))
    assert code == 1 and "already zeroed out" in err
    code, _, err = _run(capsys, "credits", "grant", "account=nobody", "ai-credits", "5")
    assert code == 1 and "company" in err
    code, _, err = _run(capsys, "credits", "grant", "account=acme", "no-such-credit", "5")
    assert code == 1 and "credit" in err
    code, rows, _ = _run(capsys, "credits", "list", "account=acme")
    assert len(rows) == 2
