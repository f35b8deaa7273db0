"""A token n-gram language model for shallow fusion: interpolated Kneser-Ney (Chen & Goodman
1999; one absolute discount per order, ``D = n1 / (n1 + 2 n2)``), estimated on the training
targets in seconds, and its prefix scorer, which gives beam search each candidate's
``log P(token | the last n-1 tokens)`` to weigh in, as the CTC prefix scorer gives its
increment (``decoding.lm_weight``).

Sentences are padded with ``n-1`` ``<s>`` in front and end with ``</s>``, so every prefix has a
full-length context and the end of a sentence is scored too. The highest order uses counts,
the lower ones continuation counts (in how many distinct contexts a k-gram follows another
token), and below the unigrams every possible token is equally likely: no token the model may
choose is ever impossible. The model keeps the n-gram counts only (``to_dict``), from which
the lower orders follow, so it travels in a checkpoint as one integer tensor.

A context's distribution is computed once and kept while it is among the most recently used
(at most ``CACHE_BYTES`` of them), so a long decode at corpus scale does not grow memory
without bound.
"""

from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import torch

from encdec.utils.errors import UserError

Context = tuple[int, ...]
CACHE_BYTES = 256 * 2**20  # the recently used contexts' log-probabilities kept (float32 rows)


@dataclass
class Distribution:
    """One context's counts at one order, discounted: P(w) = ``discounted[w]`` + ``backoff`` x
    the lower order's P(w)."""

    tokens: torch.Tensor  # (K,) the tokens seen after the context
    discounted: torch.Tensor  # (K,) max(count - D, 0) / total
    backoff: float  # D x K / total


class NgramLanguageModel:
    """Interpolated Kneser-Ney over ``vocab_size`` token ids; ``impossible`` ids (padding,
    ``<s>``) get no probability."""

    def __init__(
        self,
        ngram_counts: dict[tuple[int, ...], int],
        order: int,
        vocab_size: int,
        bos_id: int,
        eos_id: int,
        impossible: Sequence[int] = (),
    ) -> None:
        if order < 1:
            raise UserError(f"model.language_model.order must be 1 or more, got {order}")
        self.order, self.vocab_size = order, vocab_size
        self.bos_id, self.eos_id, self.impossible = bos_id, eos_id, tuple(impossible)
        self.ngram_counts = ngram_counts
        self.levels = kneser_ney_levels(ngram_counts, order)  # order k -> context -> Distribution
        possible = torch.ones(vocab_size, dtype=torch.bool)
        possible[list(self.impossible)] = False
        self.uniform = possible.double() / possible.sum()  # (V,)
        self._cache: OrderedDict[Context, torch.Tensor] = OrderedDict()  # least recent first
        self.cache_size = max(1, CACHE_BYTES // (4 * vocab_size))  # contexts kept

    @classmethod
    def estimate(
        cls,
        sentences: Iterable[Sequence[int]],
        order: int,
        vocab_size: int,
        bos_id: int,
        eos_id: int,
        impossible: Sequence[int] = (),
    ) -> Self:
        """The model of ``sentences`` (token ids without ``<s>``/``</s>``)."""
        counts: Counter[tuple[int, ...]] = Counter()
        for sentence in sentences:
            padded = [bos_id] * (order - 1) + list(sentence) + [eos_id]
            counts.update(tuple(padded[i : i + order]) for i in range(len(padded) - order + 1))
        if not counts:
            raise UserError("the language model has no training sentences to count")
        return cls(dict(counts), order, vocab_size, bos_id, eos_id, impossible)

    def initial_context(self) -> Context:
        return (self.bos_id,) * (self.order - 1)

    def log_probs(self, context: Context) -> torch.Tensor:
        """log P(token | ``context``, its last n-1 tokens) for every token: (V,), float32."""
        context = context[len(context) - self.order + 1 :] if self.order > 1 else ()
        if context in self._cache:
            self._cache.move_to_end(context)
        else:
            probs = self.uniform.clone()
            for k in range(1, self.order + 1):  # unigrams first, each order on the one below
                shorter = context[len(context) - k + 1 :] if k > 1 else ()
                seen = self.levels[k].get(shorter)
                if seen is not None:
                    probs *= seen.backoff
                    probs.index_add_(0, seen.tokens, seen.discounted)
            self._cache[context] = probs.log().float()
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return self._cache[context]

    def sentence_log_prob(self, sentence: Sequence[int]) -> float:
        """log P(``sentence`` then ``</s>``)."""
        context, total = self.initial_context(), 0.0
        for token in [*sentence, self.eos_id]:
            total += float(self.log_probs(context)[token])
            context = (*context, token)[1:] if self.order > 1 else ()
        return total

    # ---- checkpoints: plain values ----
    def to_dict(self) -> dict[str, Any]:
        ngrams = torch.tensor([[*g, c] for g, c in self.ngram_counts.items()], dtype=torch.int64)
        settings = {"order": self.order, "vocab_size": self.vocab_size, "bos_id": self.bos_id}
        return {**settings, "eos_id": self.eos_id, "impossible": list(self.impossible),
                "ngrams": ngrams}  # fmt: skip

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Self:
        rows = state["ngrams"].tolist()
        counts = {tuple(row[:-1]): row[-1] for row in rows}
        return cls(counts, state["order"], state["vocab_size"], state["bos_id"],
                   state["eos_id"], state["impossible"])  # fmt: skip


def kneser_ney_levels(
    ngram_counts: dict[tuple[int, ...], int], order: int
) -> dict[int, dict[Context, Distribution]]:
    """Each order's discounted distributions: counts at the highest order, continuation counts
    (distinct tokens before the k-gram) at the lower ones."""
    levels = {}
    counts: dict[tuple[int, ...], int] = ngram_counts
    for k in range(order, 0, -1):
        by_context: dict[Context, dict[int, int]] = defaultdict(dict)
        for ngram, count in counts.items():
            by_context[ngram[:-1]][ngram[-1]] = count
        levels[k] = discounted(by_context)
        lower: Counter[tuple[int, ...]] = Counter(ngram[1:] for ngram in counts)  # N1+(. g)
        counts = dict(lower)
    return levels


def discounted(by_context: dict[Context, dict[int, int]]) -> dict[Context, Distribution]:
    """Absolute discounting with this order's ``D = n1 / (n1 + 2 n2)`` (Ney et al. 1994),
    kept within [0.1, 0.9]: on a tiny corpus n1 or n2 may be 0 or 1, and D of 0 (no mass left
    for the lower orders, so unseen tokens impossible) or near 1 (seen counts all but erased)
    would come from a count or two, not from the data."""
    every = Counter(c for following in by_context.values() for c in following.values())
    n1, n2 = every[1], every[2]
    discount = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
    discount = min(max(discount, 0.1), 0.9)
    levels = {}
    for context, following in by_context.items():
        total = sum(following.values())
        counts = torch.tensor(list(following.values()), dtype=torch.float64)
        levels[context] = Distribution(
            tokens=torch.tensor(list(following), dtype=torch.long),
            discounted=(counts - discount).clamp(min=0) / total,
            backoff=discount * len(following) / total,
        )
    return levels


@dataclass
class NgramState:
    context: torch.Tensor  # (N, n-1) each hypothesis's last n-1 tokens

    def reorder(self, index: torch.Tensor) -> Self:
        return NgramState(self.context[index])


@dataclass
class NgramCandidates:
    context: torch.Tensor  # (N, n-1)
    tokens: torch.Tensor  # (N, M)


class NgramScorer:
    """The language model as beam search's prefix scorer, for ``batch`` sentences."""

    def __init__(self, model: NgramLanguageModel, batch: int, device: torch.device) -> None:
        self.model, self.batch, self.device = model, batch, device

    def init_state(self) -> NgramState:
        start = torch.tensor(self.model.initial_context(), dtype=torch.long)
        return NgramState(start.expand(self.batch, -1).to(self.device))

    def score(self, state: NgramState, tokens: torch.Tensor) -> tuple[torch.Tensor, Any]:
        log_probs = torch.stack(
            [self.model.log_probs(tuple(row)) for row in state.context.tolist()]
        ).to(tokens.device)  # (N, V)
        return log_probs.gather(1, tokens), NgramCandidates(state.context, tokens)

    def select(
        self, candidates: NgramCandidates, rows: torch.Tensor, columns: torch.Tensor
    ) -> NgramState:
        chosen = candidates.tokens[rows, columns].unsqueeze(1)  # (N', 1)
        return NgramState(torch.cat([candidates.context[rows], chosen], dim=1)[:, 1:])
