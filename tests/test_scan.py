"""Tests for the SCAN generator, checked against the official files where available."""

import gzip
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from encdec.data.scan import SPLITS, generate_commands, interpret, scan_split

OFFICIAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "scan"


@cache
def _read_official(name: str) -> tuple[tuple[str, str], ...]:
    """(command, actions) pairs of an official file, e.g. ``tasks_train_length``."""
    with gzip.open(OFFICIAL_DIR / f"{name}.txt.gz", "rt") as file:
        lines = file.read().splitlines()
    pairs = []
    for line in lines:
        command, actions = line.removeprefix("IN: ").split(" OUT: ")
        pairs.append((command, actions))
    return tuple(pairs)


def official(name: str) -> tuple[tuple[str, str], ...]:
    if not OFFICIAL_DIR.is_dir():
        pytest.skip(f"official SCAN files not found at {OFFICIAL_DIR}")
    return _read_official(name)


def test_command_count() -> None:
    commands = generate_commands()
    assert len(commands) == 20_910
    assert len(set(commands)) == 20_910


def test_commands_match_official() -> None:
    assert set(generate_commands()) == {command for command, _ in official("tasks")}


def test_interpretations_match_official() -> None:
    for command, actions in official("tasks"):
        assert interpret(command) == actions, command


@pytest.mark.parametrize(
    ("command", "actions"),
    [
        ("jump", "I_JUMP"),
        ("turn left", "I_TURN_LEFT"),
        ("turn around right", "I_TURN_RIGHT I_TURN_RIGHT I_TURN_RIGHT I_TURN_RIGHT"),
        ("walk opposite left", "I_TURN_LEFT I_TURN_LEFT I_WALK"),
        ("look around left", "I_TURN_LEFT I_LOOK I_TURN_LEFT I_LOOK " * 2),
        ("run thrice", "I_RUN I_RUN I_RUN"),
        ("jump twice after walk left", "I_TURN_LEFT I_WALK I_JUMP I_JUMP"),
        ("jump twice and walk left", "I_JUMP I_JUMP I_TURN_LEFT I_WALK"),
        ("turn opposite right thrice and look", "I_TURN_RIGHT I_TURN_RIGHT " * 3 + "I_LOOK"),
    ],
)
def test_hand_checked_interpretations(command: str, actions: str) -> None:
    assert interpret(command) == actions.strip()


@pytest.mark.parametrize(
    "command",
    [
        "",
        "fly",
        "turn",
        "jump left twice twice",
        "jump and",
        "and jump",
        "jump and walk and run",
        "jump after walk after run",
        "jump  twice",
        " jump",
        "JUMP",
        "around left",
        "jump twice left",
    ],
)
def test_interpret_rejects_non_commands(command: str) -> None:
    with pytest.raises(ValueError, match="not a SCAN command"):
        interpret(command)


@pytest.mark.parametrize("split", SPLITS)
def test_splits_match_official(split: str) -> None:
    generated = scan_split(split)
    for part in ("train", "test"):
        assert Counter(generated[part]) == Counter(official(f"tasks_{part}_{split}")), part


def test_addprim_train_repeats_bare_primitive() -> None:
    train = scan_split("addprim_jump")["train"]
    assert train.count(("jump", "I_JUMP")) == 1_467
    assert sum("jump" in command for command, _ in train) == 1_467


def test_length_split_threshold() -> None:
    split = scan_split("length")
    assert max(len(actions.split()) for _, actions in split["train"]) == 22
    assert min(len(actions.split()) for _, actions in split["test"]) == 24


def test_simple_split_sizes_and_disjointness() -> None:
    split = scan_split("simple")
    train, test = split["train"], split["test"]
    assert (len(train), len(test)) == (16_728, 4_182)
    assert len(set(train) | set(test)) == 20_910
    assert not set(train) & set(test)
    assert all(interpret(command) == actions for command, actions in train + test)


@pytest.mark.parametrize(
    ("split", "held_out", "neither"),
    [
        ("template_jump_around_right", "jump around right", "turn around right"),
        ("template_opposite_right", "opposite right", "turn opposite right"),
        ("template_right", "right", "turn right"),
    ],
)
def test_template_splits_hold_out_the_template(split: str, held_out: str, neither: str) -> None:
    parts = scan_split(split)
    for command, _ in parts["test"]:
        words = f" {command} "
        assert f" {held_out} " in words and f" {neither} " not in words
    verbs = ("walk", "look", "run", "jump") if held_out != "jump around right" else ("jump",)
    for command, _ in parts["train"]:
        words = f" {command} "
        assert not any(f" {verb} {held_out.removeprefix('jump ')} " in words for verb in verbs)
        assert f" {neither} " not in words


@pytest.mark.parametrize("split", SPLITS)
def test_split_order_is_sorted(split: str) -> None:
    for pairs in scan_split(split).values():
        assert pairs == sorted(pairs)


def test_unknown_split() -> None:
    message = (
        "unknown SCAN split 'x'; choose one of simple, length, addprim_jump, addprim_turn_left"
    )
    with pytest.raises(ValueError, match=message):
        scan_split("x")
