"""Speech recognition's metrics: word and character error rates (torchmetrics'
``WordErrorRate`` and ``CharErrorRate``: edit distance over the reference length, summed over
the corpus, so they sync under DDP) on normalized text.

The normalization (``normalize_transcript``), applied to hypotheses and references alike and
to the training targets: Unicode NFKC, lowercase, every character that is not a letter, a
digit or an apostrophe inside a word becomes a space (so "don't" stays one word and
"well-known" is two), whitespace collapsed. Numbers are not spelled out: a corpus that writes
"two" and a model that writes "2" differ. CER counts the spaces between words.
"""

import re
import unicodedata

import torch
from torchmetrics import Metric
from torchmetrics.text import CharErrorRate, WordErrorRate

NORMALIZATION = "NFKC, lowercase, punctuation but inner apostrophes -> space, spaces collapsed"
_NOT_WORD = re.compile(r"[^\w']+|_|(?<!\w)'|'(?!\w)")


def normalize_transcript(text: str) -> str:
    """The form transcripts are trained on and scored in:
    "A dog's toy-box!" -> "a dog's toy box"."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_NOT_WORD.sub(" ", text).split())


class SpeechMetrics(Metric):
    """Corpus WER and CER (percent) of hypotheses against one reference each, both normalized."""

    full_state_update = False
    higher_is_better = False  # the best checkpoint has the lowest WER
    names = ("wer", "cer")  # what compute() returns; the first is shown and monitored
    signature = f"WER/CER over normalized text ({NORMALIZATION})"

    def __init__(self) -> None:
        super().__init__()
        self.word_error_rate = WordErrorRate()  # each syncs its own sums under DDP
        self.char_error_rate = CharErrorRate()

    def update(self, hypotheses: list[str], references: list[str]) -> None:
        if len(hypotheses) != len(references):
            raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
        hypotheses = list(map(normalize_transcript, hypotheses))
        references = list(map(normalize_transcript, references))
        self.word_error_rate.update(hypotheses, references)
        self.char_error_rate.update(hypotheses, references)

    def compute(self) -> dict[str, torch.Tensor]:
        if not self.word_error_rate.total:
            raise ValueError("no transcripts to score")
        return {
            "wer": 100.0 * self.word_error_rate.compute(),
            "cer": 100.0 * self.char_error_rate.compute(),
        }

    def reset(self) -> None:
        super().reset()
        self.word_error_rate.reset()
        self.char_error_rate.reset()
