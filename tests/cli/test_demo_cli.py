"""How `zhibao demo` tells the reader to run zhibao: as `zhibao` when it is on the PATH,
else through this checkout's scripts/zhibao wrapper, written as they would type it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.demo import _program, explore_commands
from sync.protocol import i18n
from tiers.demo import reconciled

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = {"decided": "330782001202-20251009-0001"}


def test_demo_program_is_zhibao_when_it_is_on_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "zhibao").write_text("#!/bin/sh\n")
    (tmp_path / "zhibao").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _program() == "zhibao"


def test_demo_program_is_the_wrapper_when_zhibao_is_not_on_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder
    monkeypatch.chdir(ROOT)
    assert _program() == "scripts/zhibao"
    monkeypatch.chdir(ROOT / "scripts")
    assert _program() == "./zhibao"  # not a bare word the shell would look up on the PATH
    monkeypatch.chdir(tmp_path)
    assert _program() == str(ROOT / "scripts" / "zhibao")


def test_demo_explore_commands_name_the_folder_as_the_reader_would(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my demo").mkdir()
    lines = explore_commands(tmp_path / "my demo", SUMMARY)
    wrapper = ROOT / "scripts" / "zhibao"
    assert lines == [
        f"{wrapper} --home 'my demo/330782001' case list",
        f"{wrapper} --home 'my demo/city' case show 330782001202-20251009-0001",
        f"{wrapper} --home 'my demo/city' stats --period 2025-10",
    ]
    elsewhere = tmp_path / "elsewhere"  # the demo's folder is not below it: written whole
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert explore_commands(tmp_path / "my demo", SUMMARY)[0].startswith(
        f"{wrapper} --home '{tmp_path}/my demo/330782001'"
    )


def test_demo_reconciled_names_finding_kinds_in_the_readers_language() -> None:
    findings = [{"kind": "calendar_missing"}, {"kind": "clock_skew"}, {"kind": "clock_skew"}]
    i18n.use_locale("zh")
    try:
        said = reconciled(findings)
    finally:
        i18n.use_locale(None)
    assert said == "与月报核对：3 项发现（时钟偏差、缺少工作日历）。"
    i18n.use_locale("en")
    try:
        said = reconciled(findings[:1])
    finally:
        i18n.use_locale(None)
    assert said == "Reconciliation against the reports: 1 finding (calendar missing)."
