"""Every command explains itself: `--help` exits 0 and shows examples."""

from __future__ import annotations

import pytest

from medimage.cli.main import COMMAND_MODULES, main

COMMANDS = [[m.removesuffix("_cmd")] for m in COMMAND_MODULES] + [
    ["pipeline", "start"],
    ["pipeline", "status"],
    ["pipeline", "list"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_examples(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out.lower()
    assert f"medimage {command[0]}" in out
