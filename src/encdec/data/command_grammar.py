"""Sentences of a small spoken-command grammar: the text of the default speech corpus, so a
recognizer trains in minutes. Two kinds, mixed:

- commands: ``<verb> [<direction>] [twice|thrice] [and <verb> [<direction>] [twice|thrice]]``
  over SCAN's verbs ("jump left twice and walk"),
- digit strings: three to six of "zero" .. "nine" ("four one nine").
"""

import random

VERBS = ("walk", "run", "jump", "look", "turn")
DIRECTIONS = ("left", "right", "around left", "around right", "opposite left")
REPEATS = ("twice", "thrice")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def command(rng: random.Random) -> str:
    words = [rng.choice(VERBS)]
    if words[0] == "turn" or rng.random() < 0.6:
        words.append(rng.choice(DIRECTIONS))
    if rng.random() < 0.4:
        words.append(rng.choice(REPEATS))
    return " ".join(words)


def sentence(rng: random.Random) -> str:
    if rng.random() < 0.35:
        return " ".join(rng.choice(DIGITS) for _ in range(rng.randint(3, 6)))
    first = command(rng)
    return f"{first} and {command(rng)}" if rng.random() < 0.5 else first


def command_sentences(counts: dict[str, int], seed: int) -> dict[str, list[str]]:
    """``counts[split]`` distinct sentences per split, no sentence in two splits."""
    rng, seen = random.Random(seed), set()
    splits: dict[str, list[str]] = {}
    for split, count in counts.items():
        sentences = []
        while len(sentences) < count:
            if (text := sentence(rng)) not in seen:
                seen.add(text)
                sentences.append(text)
        splits[split] = sentences
    return splits
