"""Captioning metrics over all references of each image, Java-free, as a DDP-safe torchmetrics
Metric: BLEU-1..4, CIDEr-D and ROUGE-L.

Text is lowercased and split into words with punctuation dropped (``caption_words``), close to
the PTB tokenization of the coco-caption toolkit. Every score is reported in percent:

- ``bleu_1`` .. ``bleu_4``: sacreBLEU's corpus BLEU of order n (uniform weights, brevity penalty
  from the closest reference length, no smoothing) on those words, with every reference;
- ``cider``: CIDEr-D (Vedantam et al., 2015) exactly as coco-caption's ``CiderD`` computes it
  (tf-idf n-gram vectors for n = 1..4, hypothesis counts clipped to the reference's, Gaussian
  length penalty with sigma = 6, times 10); percent = 100 x the toolkit's number. Document
  frequencies come, by default, from the references of the *evaluated* images, as coco-caption
  computes them (the number papers report); ``document_frequencies="training"`` takes them
  from the training references instead (``set_document_frequencies``), the variant that
  CIDEr-optimised training uses;
- ``rouge_l``: coco-caption's ROUGE-L: F-measure (beta = 1.2) of the LCS precision and recall,
  each maximised over the references, averaged over images.
"""

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import sacrebleu
import torch
from torchmetrics import Metric

from encdec.metrics.text import _to_bytes, _to_texts

NGRAM_ORDER = 4
CIDER_SIGMA = 6.0
ROUGE_BETA = 1.2
REFERENCE_SEPARATOR = "\n"  # joins one image's references into one gathered string
Ngrams = Counter[tuple[str, ...]]


def caption_words(text: str) -> list[str]:
    """Lowercased words, punctuation dropped ("A dog's ball ." -> ["a", "dog's", "ball"])."""
    return re.findall(r"\w+(?:[-']\w+)*", text.lower())


def ngram_counts(words: Sequence[str], max_order: int = NGRAM_ORDER) -> Ngrams:
    return Counter(
        tuple(words[i : i + n]) for n in range(1, max_order + 1) for i in range(len(words) - n + 1)
    )


def document_frequencies(reference_sets: Sequence[Sequence[str]]) -> Counter:
    """For each n-gram, the number of images whose references contain it."""
    frequencies: Counter = Counter()
    for references in reference_sets:
        frequencies.update(set().union(*(ngram_counts(caption_words(r)) for r in references)))
    return frequencies


FrequencySource = Literal["evaluated", "training"]
FREQUENCY_SOURCES: tuple[FrequencySource, ...] = ("evaluated", "training")


class CiderD:
    """coco-caption's CIDEr-D with the given document frequencies over ``num_documents``
    images (``CiderD.of_references``: those of the evaluated images, as coco-caption does)."""

    def __init__(self, frequencies: Counter, num_documents: int) -> None:
        if num_documents < 1:
            raise ValueError("CIDEr-D needs the references of at least one image")
        self.frequencies = frequencies
        self.log_documents = math.log(float(num_documents))

    @classmethod
    def of_references(cls, reference_sets: Sequence[Sequence[str]]) -> "CiderD":
        """Document frequencies from these images' references."""
        return cls(document_frequencies(reference_sets), len(reference_sets))

    def _vector(self, counts: Ngrams) -> tuple[list[dict], list[float], int]:
        """tf-idf weights per order, their norms, and the length (the number of bigrams, as
        in the reference implementation)."""
        vectors: list[dict] = [{} for _ in range(NGRAM_ORDER)]
        norms = [0.0] * NGRAM_ORDER
        length = 0
        for ngram, count in counts.items():
            order = len(ngram) - 1
            idf = self.log_documents - math.log(max(1.0, self.frequencies.get(ngram, 0.0)))
            vectors[order][ngram] = float(count) * idf
            norms[order] += vectors[order][ngram] ** 2
            if order == 1:
                length += count
        return vectors, [math.sqrt(n) for n in norms], length

    def _similarity(self, hypothesis: tuple, reference: tuple) -> list[float]:
        (vec_h, norm_h, length_h), (vec_r, norm_r, length_r) = hypothesis, reference
        delta = float(length_h - length_r)
        values = []
        for order in range(NGRAM_ORDER):
            value = sum(
                min(weight, vec_r[order].get(ngram, 0.0)) * vec_r[order].get(ngram, 0.0)
                for ngram, weight in vec_h[order].items()
            )  # clipped: a hypothesis n-gram counts at most as often as in the reference
            if norm_h[order] != 0 and norm_r[order] != 0:
                value /= norm_h[order] * norm_r[order]
            values.append(value * math.exp(-(delta**2) / (2 * CIDER_SIGMA**2)))
        return values

    def image_score(self, hypothesis: str, references: Sequence[str]) -> float:
        """CIDEr-D of one hypothesis against its references (the toolkit's scale)."""
        vector = self._vector(ngram_counts(caption_words(hypothesis)))
        total = [0.0] * NGRAM_ORDER
        for reference in references:
            similarity = self._similarity(
                vector, self._vector(ngram_counts(caption_words(reference)))
            )
            total = [t + s for t, s in zip(total, similarity, strict=True)]
        return sum(total) / NGRAM_ORDER / len(references) * 10.0

    def corpus_score(
        self, hypotheses: Sequence[str], reference_sets: Sequence[Sequence[str]]
    ) -> float:
        scores = [self.image_score(h, r) for h, r in zip(hypotheses, reference_sets, strict=True)]
        return sum(scores) / len(scores)


def longest_common_subsequence(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for word in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis: str, references: Sequence[str], beta: float = ROUGE_BETA) -> float:
    """coco-caption's ROUGE-L of one hypothesis (0..1)."""
    words = caption_words(hypothesis)
    precisions, recalls = [], []
    for reference in references:
        reference_words = caption_words(reference)
        common = longest_common_subsequence(words, reference_words)
        precisions.append(common / len(words) if words else 0.0)
        recalls.append(common / len(reference_words) if reference_words else 0.0)
    precision, recall = max(precisions), max(recalls)
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


def corpus_bleu(
    hypotheses: Sequence[str], reference_sets: Sequence[Sequence[str]], order: int
) -> tuple[float, str]:
    """sacreBLEU corpus BLEU-``order`` (percent) on ``caption_words`` and sacreBLEU's signature;
    images may have different numbers of references (missing ones are None: sacreBLEU skips
    them)."""
    most = max(len(references) for references in reference_sets)
    streams = [
        [" ".join(caption_words(refs[i])) if i < len(refs) else None for refs in reference_sets]
        for i in range(most)
    ]
    hypotheses = [" ".join(caption_words(h)) for h in hypotheses]
    metric = sacrebleu.BLEU(tokenize="none", max_ngram_order=order, smooth_method="none")
    score = metric.corpus_score(hypotheses, streams).score
    return score, f"words:lowercase-nopunct|{metric.get_signature()}"


class CaptionMetrics(Metric):
    """BLEU-1..4, CIDEr-D and ROUGE-L of decoded captions against every reference of each image.
    Strings are gathered across processes as byte tensors (like ``TextMetrics``).

    ``document_frequencies``: where CIDEr-D's document frequencies come from: ``evaluated``
    (the references of the images scored, coco-caption's definition) or ``training`` (the
    training references, given by ``set_document_frequencies``)."""

    full_state_update = False
    names = ("bleu_4", "bleu_1", "bleu_2", "bleu_3", "cider", "rouge_l")  # first: progress bar
    higher_is_better = True

    def __init__(self, document_frequencies: FrequencySource = "evaluated") -> None:
        super().__init__()
        if document_frequencies not in FREQUENCY_SOURCES:
            raise ValueError(
                f"document_frequencies={document_frequencies!r}: choose one of "
                + ", ".join(FREQUENCY_SOURCES)
            )
        self.add_state("hypotheses", default=[], dist_reduce_fx="cat")
        self.add_state("references", default=[], dist_reduce_fx="cat")
        self.frequency_source = document_frequencies
        self.training_cider: CiderD | None = None
        self.signature = ""  # sacreBLEU's signature (of BLEU-4), set by compute()

    @property
    def needs_training_references(self) -> bool:
        return self.frequency_source == "training"

    def set_document_frequencies(self, training_references: Sequence[Sequence[str]]) -> None:
        """CIDEr-D's document frequencies from the references of the training images (used
        when ``document_frequencies="training"``)."""
        self.training_cider = CiderD.of_references(training_references)

    def update(self, hypotheses: list[str], references: list[list[str]]) -> None:
        if len(hypotheses) != len(references):
            raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} images")
        for hypothesis, image_references in zip(hypotheses, references, strict=True):
            if not image_references:
                raise ValueError(f"no reference for the hypothesis {hypothesis!r}")
            self.hypotheses.append(_to_bytes(hypothesis))
            self.references.append(_to_bytes(REFERENCE_SEPARATOR.join(image_references)))

    def texts(self) -> tuple[list[str], list[list[str]]]:
        """(hypotheses, references per image) from every process (after sync)."""
        references = [joined.split(REFERENCE_SEPARATOR) for joined in _to_texts(self.references)]
        return _to_texts(self.hypotheses), references

    def compute(self) -> dict[str, torch.Tensor]:
        hypotheses, references = self.texts()
        if not hypotheses:
            raise ValueError("no decoded captions to score")
        if self.frequency_source == "training":
            if self.training_cider is None:
                raise ValueError(
                    "CIDEr-D has no training document frequencies (set_document_frequencies)"
                )
            cider = self.training_cider
        else:
            cider = CiderD.of_references(references)
        values = {}
        for order in range(1, NGRAM_ORDER + 1):
            values[f"bleu_{order}"], self.signature = corpus_bleu(
                hypotheses, references, order
            )  # the signature kept is BLEU-4's
        values["cider"] = 100.0 * cider.corpus_score(hypotheses, references)
        rouge = [rouge_l(h, r) for h, r in zip(hypotheses, references, strict=True)]
        values["rouge_l"] = 100.0 * sum(rouge) / len(rouge)
        return {name: torch.tensor(values[name]) for name in self.names}
