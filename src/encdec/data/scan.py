"""SCAN (Lake & Baroni, 2018), generated from its grammar.

SCAN maps navigation commands to action sequences. Its grammar is::

    C -> S and S | S after S | S
    S -> V twice | V thrice | V
    V -> D[1] opposite D[2] | D[1] around D[2] | D | U
    D -> U left | U right | turn left | turn right
    U -> walk | look | run | jump

with the semantics

* ``walk``/``look``/``run``/``jump`` -> ``I_WALK``/``I_LOOK``/``I_RUN``/``I_JUMP``;
  ``turn`` alone produces no action;
* ``x left`` -> ``I_TURN_LEFT x`` (``right`` likewise);
* ``x opposite left`` -> ``I_TURN_LEFT I_TURN_LEFT x``;
* ``x around left`` -> ``I_TURN_LEFT x`` four times;
* ``x twice`` / ``x thrice`` -> ``x`` two / three times;
* ``x1 and x2`` -> ``x1 x2``; ``x1 after x2`` -> ``x2 x1``.

There are 34 ``V`` phrases, hence 102 ``S`` phrases and 102 + 2 * 102**2 = 20,910
commands, the same set as the official ``tasks.txt``. Every split equals the official files
(as multisets): the random ``simple`` split from a bitmap of its test commands
(``scan_simple_split``), the others by their rules.
"""

import random
from typing import Any

from encdec.data.scan_simple_split import simple_test_flags
from encdec.data.translation import TranslationDataModule
from encdec.utils.errors import UserError

Pair = tuple[str, str]  # (command, actions)

# The template splits of Loula, Baroni & Lake (2018): test on "<verb> <template>", where verb
# is one of these (not "turn"); commands with "turn <template>" are in neither part.
_TEMPLATES = {
    "template_around_right": ("around right", ("walk", "look", "run", "jump")),
    "template_jump_around_right": ("around right", ("jump",)),
    "template_opposite_right": ("opposite right", ("walk", "look", "run", "jump")),
    "template_right": ("right", ("walk", "look", "run", "jump")),
}
SPLITS = ("simple", "length", "addprim_jump", "addprim_turn_left", *_TEMPLATES)

_VERBS = {"walk": ("I_WALK",), "look": ("I_LOOK",), "run": ("I_RUN",), "jump": ("I_JUMP",)}
_TURNS = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}
_REPEATS = {"twice": 2, "thrice": 3}
_CONJUNCTIONS = ("and", "after")

_MAX_TRAIN_LENGTH = 22  # length split: train on at most 22 actions, test on longer
# In the official add-primitive training files the bare primitive command is repeated
# so that it makes up a tenth of the examples: one copy per nine other commands
# (jump: 1,467 copies beside 13,203 commands; turn left: 2,189 beside 19,701).
_OTHERS_PER_PRIMITIVE_COPY = 9
_ADDED_PRIMITIVES = {"addprim_jump": "jump", "addprim_turn_left": "turn left"}


def _verb_phrases() -> dict[str, tuple[str, ...]]:
    """Every ``V`` phrase with its actions."""
    phrases = dict(_VERBS)
    for verb, actions in {**_VERBS, "turn": ()}.items():
        for direction, turn in _TURNS.items():
            phrases[f"{verb} {direction}"] = (turn, *actions)
            phrases[f"{verb} opposite {direction}"] = (turn, turn, *actions)
            phrases[f"{verb} around {direction}"] = (turn, *actions) * 4
    return phrases


def _simple_phrases() -> dict[str, tuple[str, ...]]:
    """Every ``S`` phrase (a ``V`` phrase, optionally repeated) with its actions."""
    phrases = {}
    for phrase, actions in _verb_phrases().items():
        phrases[phrase] = actions
        for word, times in _REPEATS.items():
            phrases[f"{phrase} {word}"] = actions * times
    return phrases


_SIMPLE_PHRASES = _simple_phrases()


def generate_commands() -> list[str]:
    """All 20,910 SCAN commands: every ``S`` phrase, then every ``S conj S``."""
    compounds = [
        f"{first} {conjunction} {second}"
        for conjunction in _CONJUNCTIONS
        for first in _SIMPLE_PHRASES
        for second in _SIMPLE_PHRASES
    ]
    return [*_SIMPLE_PHRASES, *compounds]


def _phrase_actions(phrase: str, command: str) -> tuple[str, ...]:
    try:
        return _SIMPLE_PHRASES[phrase]
    except KeyError:
        raise ValueError(f"not a SCAN command: {command!r}") from None


def interpret(command: str) -> str:
    """The space-separated action sequence of a SCAN command.

    >>> interpret("jump twice after walk left")
    'I_TURN_LEFT I_WALK I_JUMP I_JUMP'
    """
    words = command.split(" ")
    positions = [i for i, word in enumerate(words) if word in _CONJUNCTIONS]
    if not positions:
        return " ".join(_phrase_actions(command, command))
    if len(positions) > 1:
        raise ValueError(f"not a SCAN command (more than one conjunction): {command!r}")
    i = positions[0]
    first = _phrase_actions(" ".join(words[:i]), command)
    second = _phrase_actions(" ".join(words[i + 1 :]), command)
    if words[i] == "after":
        first, second = second, first
    return " ".join(first + second)


def _simple_split(pairs: list[Pair]) -> tuple[list[Pair], list[Pair]]:
    """The official random 80/20 split (``pairs`` in generation order)."""
    train, test = [], []
    for pair, in_test in zip(pairs, simple_test_flags(len(pairs)), strict=True):
        (test if in_test else train).append(pair)
    return train, test


def _length_split(pairs: list[Pair]) -> tuple[list[Pair], list[Pair]]:
    train, test = [], []
    for pair in pairs:
        short = len(pair[1].split(" ")) <= _MAX_TRAIN_LENGTH
        (train if short else test).append(pair)
    return train, test


def _add_primitive_split(pairs: list[Pair], primitive: str) -> tuple[list[Pair], list[Pair]]:
    """Test on every compound use of ``primitive``; train on the other commands plus
    the bare primitive, repeated as in the official files."""
    train, test = [], []
    for pair in pairs:
        if pair[0] != primitive:
            uses_primitive = f" {primitive} " in f" {pair[0]} "
            (test if uses_primitive else train).append(pair)
    copies = len(train) // _OTHERS_PER_PRIMITIVE_COPY
    return train + [(primitive, interpret(primitive))] * copies, test


def _template_split(
    pairs: list[Pair], template: str, verbs: tuple[str, ...]
) -> tuple[list[Pair], list[Pair]]:
    """Test on the commands with "<verb> <template>" for the given verbs; train on the rest,
    except (as in the official files) commands with "turn <template>", in neither part."""
    train, test = [], []
    for pair in pairs:
        command = f" {pair[0]} "
        if f" turn {template} " in command:
            continue
        held_out = any(f" {verb} {template} " in command for verb in verbs)
        (test if held_out else train).append(pair)
    return train, test


def scan_split(split: str) -> dict[str, list[Pair]]:
    """``{"train": [...], "test": [...]}`` of (command, actions) pairs for ``split``, equal to
    the official files as multisets; pairs are sorted by command."""
    pairs = [(command, interpret(command)) for command in generate_commands()]
    if split == "simple":
        train, test = _simple_split(pairs)
    elif split == "length":
        train, test = _length_split(pairs)
    elif split in _ADDED_PRIMITIVES:
        train, test = _add_primitive_split(pairs, _ADDED_PRIMITIVES[split])
    elif split in _TEMPLATES:
        train, test = _template_split(pairs, *_TEMPLATES[split])
    else:
        raise ValueError(f"unknown SCAN split {split!r}; choose one of {', '.join(SPLITS)}")
    return {"train": sorted(train), "test": sorted(test)}


class ScanDataModule(TranslationDataModule):
    """SCAN as a translation task (commands -> actions), generated offline.

    SCAN has no validation split: ``val_fraction`` of the training pairs (a seeded choice)
    is held out for checkpoint selection. The test split is never used for selection.
    """

    def __init__(
        self, cache_dir: str, split: str = "simple", val_fraction: float = 0.1, **kwargs: Any
    ) -> None:
        if split not in SPLITS:
            raise UserError(
                f"unknown SCAN split '{split}' (data.split); choose one of {', '.join(SPLITS)}"
            )
        kwargs.setdefault(
            "tokenizer", {"kind": "word", "vocab_size": 100, "joint": False, "min_frequency": 1}
        )
        super().__init__(
            source_lang="command", target_lang="actions", cache_dir=cache_dir, **kwargs
        )
        self.split, self.val_fraction = split, val_fraction

    def read_split(self, stage: str) -> tuple[list[str], list[str]]:
        pairs = scan_split(self.split)
        if stage == "test":
            chosen = pairs["test"]
        else:
            train = random.Random(self.seed).sample(pairs["train"], len(pairs["train"]))
            n_val = round(self.val_fraction * len(train))
            chosen = train[:n_val] if stage == "val" else train[n_val:]
        return [c for c, _ in chosen], [a for _, a in chosen]
