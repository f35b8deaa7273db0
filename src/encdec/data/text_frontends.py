"""What a speech synthesizer reads of a text: its characters, or the phonemes espeak-ng says
for it. Spelling is a poor guide to English sound ("though", "through", "tough"), and with
characters the network must also learn to pronounce; phonemes leave it only how to say them.

Both normalize first (``normalize_for_synthesis``: NFKC, lowercase, whitespace collapsed,
punctuation kept for prosody); the tokenizer then reads the result one symbol at a time.
"""

import os
import re
import subprocess
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from encdec.utils.errors import UserError


class TextFrontend(Protocol):
    units: str  # what its symbols are, for messages: "characters", "phonemes"

    def __call__(self, texts: list[str]) -> list[str]:
        """Raw texts -> the symbol strings a synthesizer reads, one for each."""
        ...


def normalize_for_synthesis(text: str) -> str:
    """The form texts are synthesized from: "A  Dog's toy-box!" -> "a dog's toy-box!"."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


class Characters:
    """The normalized text itself: "A dog runs." -> "a dog runs."."""

    units = "characters"

    def __call__(self, texts: list[str]) -> list[str]:
        return [normalize_for_synthesis(text) for text in texts]


class EspeakPhonemes:
    """IPA phonemes from espeak-ng's pronunciation rules and dictionary for ``language``
    (``espeak-ng --ipa``), with stress marks or without, words apart and punctuation kept:
    "A dog runs." -> "ɐ dˈɑːɡ ɹˈʌnz.". Runs the espeak-ng program (Debian: espeak-ng), one
    process per core, and remembers what it said (a text is read for the tokenizer and again
    for its ids)."""

    units = "phonemes"

    def __init__(self, language: str = "en-us", stress: bool = True) -> None:
        self.language = language
        self.stress = stress
        self._said: dict[str, str] = {}  # word run -> its phonemes

    def __call__(self, texts: list[str]) -> list[str]:
        # each text -> alternating runs of words and of punctuation marks; the word runs not
        # said before are said together, then each text is put back together, marks in place
        pieces = [PUNCTUATION.split(normalize_for_synthesis(text)) for text in texts]
        runs = {part.strip() for parts in pieces for part in parts[::2] if WORD.search(part)}
        if unsaid := sorted(runs - self._said.keys()):
            self._say(unsaid)
        spoken = []
        for parts in pieces:
            symbols = ""
            for position, part in enumerate(parts):
                if position % 2:  # punctuation, right after what precedes it
                    symbols += part
                elif WORD.search(part):
                    symbols += (" " if symbols else "") + self._said[part.strip()]
            spoken.append(symbols)
        return spoken

    def _say(self, runs: list[str]) -> None:
        """espeak-ng's phonemes for each run of words, one line in and one line out each."""
        shards = min(os.cpu_count() or 1, -(-len(runs) // 1000))  # processes, 1,000+ runs each
        size = -(-len(runs) // shards)
        parts = [runs[start : start + size] for start in range(0, len(runs), size)]
        with ThreadPoolExecutor(len(parts)) as pool:
            results = list(pool.map(self._espeak, parts))
        for part, lines in zip(parts, results, strict=True):
            for run, line in zip(part, lines, strict=True):
                said = " ".join(line.split())
                self._said[run] = said if self.stress else said.replace("ˈ", "").replace("ˌ", "")

    def _espeak(self, runs: list[str]) -> list[str]:
        command = ["espeak-ng", "-q", "--ipa", "-l", "100000", "-v", self.language]
        try:  # -l: every line is a clause of its own, said on a line of its own
            result = subprocess.run(
                command, input="\n".join(runs) + "\n", capture_output=True, text=True,
                encoding="utf-8",
            )  # fmt: skip
        except FileNotFoundError:
            raise UserError(
                "phonemes need espeak-ng: install it (apt-get install espeak-ng) or read "
                "characters: data/text_frontend=characters"
            ) from None
        if result.returncode != 0:
            why = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"
            raise UserError(
                f"espeak-ng cannot say '{self.language}' (data.text_frontend.language): {why}"
            )
        lines = result.stdout.splitlines()
        if len(lines) != len(runs):
            raise RuntimeError(f"espeak-ng said {len(lines)} lines for {len(runs)}")
        return lines


WORD = re.compile(r"\w")  # a run with something to say
PUNCTUATION = re.compile(r"([^\w\s'-]+)")  # marks that shape prosody; apostrophes, hyphens in words
