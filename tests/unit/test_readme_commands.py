"""Every `switchboard` command the README names exists as written: its --help answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from switchboard.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
WORD = re.compile(r"[a-z][a-z0-9-]*")


def readme_commands() -> list[tuple[str, ...]]:
    """The command words of every `switchboard …` the README shows, up to the first argument.

    In the first cell of a table row, a bare `word` after a command is a sibling subcommand
    (`switchboard sandbox load FILE`, `reset`, `show`).
    """
    found: list[tuple[str, ...]] = []
    for line in README.read_text().splitlines():
        text = line.split(" | ")[0] if line.startswith("|") else line
        last: tuple[str, ...] = ()
        for snippet in re.findall(r"`([^`]+)`", text):
            words = snippet.split()
            if words[0] == "switchboard":
                command = last = tuple(_leading_words(words))
            elif line.startswith("|") and len(last) > 2 and WORD.fullmatch(snippet):
                command = (*last[:-1], snippet)
            else:
                continue
            if command not in found:
                found.append(command)
    return found


def _leading_words(words: list[str]) -> list[str]:
    command = []
    for word in words:
        if not WORD.fullmatch(word) or word.isupper():
            break
        command.append(word)
    return command


def test_the_readme_names_the_commands() -> None:
    commands = readme_commands()
    assert ("switchboard", "run") in commands
    assert ("switchboard", "nlu", "eval") in commands
    assert ("switchboard", "sandbox", "reset") in commands
    assert ("switchboard", "kb", "init") in commands


@pytest.mark.parametrize("command", readme_commands(), ids=" ".join)
def test_every_readme_command_answers_help(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command[1:], "--help"])
    out = capsys.readouterr()
    assert done.value.code == 0, out.err
    assert "usage:" in out.out and " ".join(command[:2]) in out.out


def test_nlu_eval_reads_its_files_as_the_readme_says(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "train.csv"
    code = main(["nlu", "eval", "--train", str(missing), "--test", str(missing), "--json"])
    err = capsys.readouterr().err
    assert code == 2 and str(missing) in err and "unrecognized arguments" not in err
