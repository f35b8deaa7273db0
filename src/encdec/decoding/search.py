"""Greedy and beam search for every model, through the incremental step interface.

A model exposes (``EncoderDecoder``, see ``networks/encoder_decoder.py``)::

    encode(src, src_mask)            -> memory      # memory.reorder(index) keeps rows `index`
    init_state(memory)               -> state       # state.reorder(index) likewise
    step(prev_tokens, state, memory) -> logits (B, V), state, attention (B, S) | None

Greedy search takes the most probable token at each step; the same loop with a ``Sampler``
draws it instead (temperature, top-k, nucleus). Both searches drop sentences from the batch as
soon as they are finished, so the last steps run on only the long sentences. Output tokens
exclude BOS and EOS.
"""

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch

from encdec.decoding.ctc_best_path import ctc_best_path
from encdec.decoding.ctc_prefix_score import CTCPrefixScorer
from encdec.decoding.ngram_language_model import NgramScorer
from encdec.modules.interface import Reorderable
from encdec.utils.errors import UserError


class StepModel(Protocol):
    bos_id: int
    eos_id: int
    pad_id: int

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> Any: ...
    def init_state(self, memory: Any) -> Any: ...
    def step(
        self, prev_tokens: torch.Tensor, state: Any, memory: Any
    ) -> tuple[torch.Tensor, Any, torch.Tensor | None]: ...


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS/EOS
    score: float  # log-probability; beam search divides it by the length penalty
    finished: bool  # False when the search hit the length limit before EOS
    attention: torch.Tensor | None = None  # (steps, S) per decoded token (and EOS); greedy search
    #   fills it when asked to (keep_attention) and the model's step returns attention


def max_output_lengths(src_mask: torch.Tensor, a: float, b: int, cap: int) -> torch.Tensor:
    """Per-sentence output limit ``a * source_length + b``, at most ``cap``: (B,) long."""
    source_lengths = src_mask.sum(dim=1)
    return (a * source_lengths + b).long().clamp(min=1, max=cap)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al., 2016); alpha = 0 disables it."""
    return ((5.0 + length) / 6.0) ** alpha


def _log_probs(model: StepModel, logits: torch.Tensor) -> torch.Tensor:
    """(rows, V) log-probabilities in fp32, with PAD and BOS never chosen."""
    logits = logits.float()
    logits[:, [model.pad_id, model.bos_id]] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


class TokenChoice(Protocol):
    def __call__(self, log_probs: torch.Tensor) -> torch.Tensor: ...  # (rows, V) -> (rows,)


def most_probable(log_probs: torch.Tensor) -> torch.Tensor:
    """Greedy search's choice: the arg-max token of each row."""
    return log_probs.argmax(dim=-1)


@dataclass
class Sampler:
    """Draws each next token from the model's distribution at ``temperature``, restricted to
    the ``top_k`` most probable tokens (0: all) and to the smallest set whose probability
    reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020; 1.0: all)."""

    generator: torch.Generator
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __call__(self, log_probs: torch.Tensor) -> torch.Tensor:
        logits = log_probs / self.temperature  # (rows, V)
        if 0 < self.top_k < logits.size(-1):
            kth_best = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth_best, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(dim=-1)
            before = probs.cumsum(dim=-1) - probs  # probability of the better tokens
            sorted_logits = sorted_logits.masked_fill(before >= self.top_p, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)


@torch.no_grad()
def greedy_search(
    model: StepModel,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    max_lengths: torch.Tensor,
    keep_attention: bool = False,
    choose: TokenChoice = most_probable,
) -> list[Hypothesis]:
    """One token at a time, as ``choose`` picks it (arg-max by default, or a ``Sampler``); one
    hypothesis per source sentence, in input order, scored by the model's log-probabilities.
    With ``keep_attention`` each hypothesis keeps the attention of its steps, if the model
    has any."""
    memory = model.encode(src, src_mask)
    state = model.init_state(memory)
    batch = src.size(0)
    rows = torch.arange(batch, device=src.device)  # original sentence of each live row
    prev = torch.full((batch,), model.bos_id, dtype=torch.long, device=src.device)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    scores = [0.0] * batch
    finished = [False] * batch
    attention: list[list[torch.Tensor]] = [[] for _ in range(batch)]  # (S,) per step
    for t in range(int(max_lengths.max())):
        logits, state, weights = model.step(prev, state, memory)  # weights: (live, S) | None
        if keep_attention and weights is not None:
            for i, row in enumerate(rows.tolist()):
                attention[row].append(weights[i])
        log_probs = _log_probs(model, logits)  # (live, V)
        best = choose(log_probs)  # (live,)
        best_scores = log_probs.gather(1, best.unsqueeze(1)).squeeze(1)
        is_eos = best == model.eos_id
        at_limit = max_lengths[rows] <= t + 1
        for row, token, score, eos in zip(
            rows.tolist(), best.tolist(), best_scores.tolist(), is_eos.tolist(), strict=True
        ):
            scores[row] += score
            if eos:
                finished[row] = True
            else:
                tokens[row].append(token)
        live = ~(is_eos | at_limit)
        if not live.any():
            break
        if not live.all():
            keep = live.nonzero().squeeze(1)
            rows, best = rows[keep], best[keep]
            state, memory = state.reorder(keep), memory.reorder(keep)
        prev = best
    return [
        Hypothesis(
            tokens[i], scores[i], finished[i], torch.stack(attention[i]) if attention[i] else None
        )
        for i in range(batch)
    ]


class PrefixScorer(Protocol):
    """An extra scorer of beam search's prefixes (a CTC prefix scorer; a language model)."""

    def init_state(self) -> Reorderable: ...  # one row per sentence

    def score(self, state: Any, tokens: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Score increments (N, M) of extending each prefix by each of ``tokens`` (N, M), and
        the candidates' states."""
        ...

    def select(self, candidates: Any, rows: torch.Tensor, columns: torch.Tensor) -> Any:
        """The state of candidate ``columns[i]`` of prefix ``rows[i]``."""
        ...


def weighted(weight: float, scores: torch.Tensor) -> torch.Tensor:
    """``weight * scores`` with impossible (-inf) scores kept impossible, also at weight 0
    (the model's PAD and BOS are never chosen)."""
    return torch.where(scores == float("-inf"), scores, weight * scores)


def joint_scores(
    log_probs: torch.Tensor,
    scorers: Sequence[tuple[float, PrefixScorer]],
    states: list[Any],
    pre_beam: int,
) -> tuple[torch.Tensor, torch.Tensor | None, list[Any]]:
    """Each hypothesis's step scores: the model's log-probabilities (N, V) alone, or, with
    scorers, over its ``pre_beam`` most probable tokens (N, M) with the scorers' weighted
    increments added; the candidate tokens (None: all of V in order) and each scorer's
    candidates."""
    if not scorers:
        return log_probs, None, []
    model_scores, tokens = log_probs.topk(min(pre_beam, log_probs.size(1)), dim=1)  # (N, M)
    total = weighted(1.0 - sum(weight for weight, _ in scorers), model_scores)
    scored = []
    for (weight, scorer), state in zip(scorers, states, strict=True):
        increments, candidates = scorer.score(state, tokens)
        if weight > 0:  # weight 0: the scorer has no say (not even on what it finds impossible)
            total = total + weight * increments
        scored.append(candidates)
    return total, tokens, scored


@torch.no_grad()
def beam_search(
    model: StepModel,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    max_lengths: torch.Tensor,
    beam_size: int,
    alpha: float = 0.0,
    n_best: int = 1,
    scorers: Sequence[tuple[float, PrefixScorer]] = (),
    memory: Any = None,
) -> list[list[Hypothesis]]:
    """Batched beam search with a GNMT length penalty; the ``n_best`` best per sentence, best first.

    A sentence is done once it has ``beam_size`` finished hypotheses or reaches its length limit;
    at the limit its live beams count as (unfinished) hypotheses, so there is always an answer.

    ``scorers``: extra prefix scorers with their weights (a CTC prefix scorer): a candidate's
    score is ``(1 - sum(weights))`` x the model's log-probability + each weight x its scorer's
    increment. The scorers see the ``2 x beam_size`` best tokens of each hypothesis by the
    model (the pre-beam). ``memory``: the model's encoding of ``src``, when the caller has it.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    batch, device, k = src.size(0), src.device, beam_size
    memory = model.encode(src, src_mask) if memory is None else memory
    beams = torch.arange(batch, device=device).repeat_interleave(k)  # K rows per sentence
    memory = memory.reorder(beams)
    state = model.init_state(memory)
    scorer_states = [scorer.init_state().reorder(beams) for _, scorer in scorers]

    sentences = torch.arange(batch, device=device)  # original index of each live sentence
    beam_scores = torch.full((batch, k), float("-inf"), device=device)  # summed log-probs
    beam_scores[:, 0] = 0.0  # all beams start identical: keep one so candidates are distinct
    beam_tokens = torch.empty((batch, k, 0), dtype=torch.long, device=device)  # (n, K, t)
    prev = torch.full((batch * k,), model.bos_id, dtype=torch.long, device=device)
    done: list[list[Hypothesis]] = [[] for _ in range(batch)]

    for t in range(int(max_lengths.max())):
        logits, state, _ = model.step(prev, state, memory)
        log_probs = _log_probs(model, logits)  # (n*K, V)
        n = beam_scores.size(0)
        step_scores, tokens, scored = joint_scores(log_probs, scorers, scorer_states, 2 * k)
        width = step_scores.size(1)  # V, or the pre-beam's M tokens per hypothesis
        candidates = (beam_scores.unsqueeze(2) + step_scores.view(n, k, width)).view(n, k * width)
        top_scores, top_ids = candidates.topk(min(2 * k, k * width), dim=1)  # (n, 2K)
        top_beams, top_columns = top_ids // width, top_ids % width
        top_tokens = top_columns if tokens is None else tokens.view(n, k * width).gather(1, top_ids)
        is_eos = top_tokens == model.eos_id

        # EOS among the K best candidates ends a hypothesis.
        penalty = length_penalty(t + 1, alpha)
        for i, r in (is_eos[:, :k] & (top_scores[:, :k] > float("-inf"))).nonzero().tolist():
            hypothesis_tokens = beam_tokens[i, top_beams[i, r]].tolist()
            score = top_scores[i, r].item() / penalty
            done[int(sentences[i])].append(Hypothesis(hypothesis_tokens, score, True))

        # The K best candidates that do not end go on.
        rank = torch.arange(top_ids.size(1), device=device).expand_as(
            top_ids
        ) + is_eos * top_ids.size(1)
        pick = rank.topk(k, dim=1, largest=False).indices  # (n, K)
        beam_scores = top_scores.gather(1, pick)
        chosen_beams = top_beams.gather(1, pick)
        beam_tokens = torch.cat(
            [
                beam_tokens.gather(1, chosen_beams.unsqueeze(2).expand(-1, -1, t)),
                top_tokens.gather(1, pick).unsqueeze(2),
            ],
            dim=2,
        )  # (n, K, t + 1)

        at_limit = max_lengths[sentences] <= t + 1
        for i in at_limit.nonzero().squeeze(1).tolist():
            sentence = int(sentences[i])
            for j in range(k):
                # every live beam; an impossible one (-inf: e.g. longer than CTC allows) only
                # when the sentence would otherwise have no answer at all
                if beam_scores[i, j] > float("-inf") or (j == 0 and not done[sentence]):
                    score = beam_scores[i, j].item() / penalty
                    done[sentence].append(Hypothesis(beam_tokens[i, j].tolist(), score, False))
        live = ~at_limit & torch.tensor(
            [len(done[int(s)]) < k for s in sentences.tolist()], device=device
        )
        if not live.any():
            break
        rows = (torch.arange(n, device=device).unsqueeze(1) * k + chosen_beams)[live].view(-1)
        state = state.reorder(rows)
        columns = top_columns.gather(1, pick)[live].view(-1)
        scorer_states = [
            scorer.select(candidates_of_scorer, rows, columns)
            for (_, scorer), candidates_of_scorer in zip(scorers, scored, strict=True)
        ]
        if not live.all():
            keep = live.nonzero().squeeze(1)
            memory = memory.reorder(
                (keep.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1)
            )
            sentences, beam_scores, beam_tokens = (
                sentences[keep],
                beam_scores[keep],
                beam_tokens[keep],
            )
        prev = beam_tokens[:, :, -1].reshape(-1)
    return [sorted(hyps, key=lambda h: h.score, reverse=True)[:n_best] for hyps in done]


@dataclass
class DecodingConfig:
    """How val/test/translate decode: ``beam_size`` 1 is greedy search; ``sample`` draws
    ``n_best`` outputs per sentence instead (``beam_size`` 1), reproducibly from ``seed``."""

    beam_size: int = 1
    length_penalty: float = 0.6  # GNMT alpha; used by beam search only
    n_best: int = 1
    max_len_a: float = 1.5  # output limit = a * source length + b tokens
    max_len_b: int = 10
    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: every token
    top_p: float = 1.0  # 1.0: every token
    seed: int = 0
    ctc_weight: float = 0.0  # joint CTC/attention search: the CTC prefix scorer's weight
    lm_weight: float = 0.0  # shallow fusion: the n-gram language model's weight (beam search)

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise UserError(f"decoding.beam_size must be >= 1, got {self.beam_size}")
        if not 0 <= self.ctc_weight <= 1:
            raise UserError(f"decoding.ctc_weight must be in [0, 1], got {self.ctc_weight}")
        if not 0 <= self.lm_weight <= 1 - self.ctc_weight:
            raise UserError(
                f"decoding.lm_weight must be in [0, 1 - ctc_weight] (the decoder's weight is "
                f"1 - ctc_weight - lm_weight), got {self.lm_weight} with ctc_weight "
                f"{self.ctc_weight}"
            )
        if self.sample and self.ctc_weight + self.lm_weight > 0:
            raise UserError(
                "decoding.sample=true draws from the decoder alone: ctc_weight=0, lm_weight=0"
            )
        if self.sample:
            self._check_sampling()
        elif not 1 <= self.n_best <= self.beam_size:
            raise UserError(
                f"decoding.n_best={self.n_best} must be in 1..decoding.beam_size "
                f"({self.beam_size}); decoding.sample=true draws n_best samples"
            )

    def _check_sampling(self) -> None:
        if self.beam_size != 1:
            raise UserError("decoding.sample=true draws tokens one path at a time: beam_size=1")
        if self.n_best < 1:
            raise UserError(
                f"decoding.n_best (samples per sentence) must be >= 1, got {self.n_best}"
            )
        if self.temperature <= 0:
            raise UserError(f"decoding.temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise UserError(f"decoding.top_k must be >= 0 (0: all tokens), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"decoding.top_p must be in (0, 1], got {self.top_p}")

    @property
    def suffix(self) -> str:
        """Metric-name suffix saying how output was decoded: '' (greedy), '_beam5',
        '_sample', then '_ctc0.3' with the CTC prefix scorer and '_lm0.2' with the language
        model."""
        if self.sample:
            return "_sample"
        search = "" if self.beam_size == 1 else f"_beam{self.beam_size}"
        search += f"_ctc{self.ctc_weight:g}" if self.ctc_weight > 0 else ""
        return search + (f"_lm{self.lm_weight:g}" if self.lm_weight > 0 else "")

    def updated(self, settings: Mapping[str, Any]) -> "DecodingConfig":
        """This config with ``settings`` applied; a ``None`` keeps this config's value (the
        entry points' configs leave the output limits to the checkpoint that way)."""
        return replace(self, **{k: v for k, v in settings.items() if v is not None})


def decode(
    model: StepModel,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    config: DecodingConfig,
    max_length_cap: int,
) -> list[list[Hypothesis]]:
    """Greedy search, sampling or beam search as ``config`` says; n-best lists per sentence,
    best first (samples: by their log-probability). With a language model weight, search is
    beam search, also at beam size 1."""
    max_lengths = max_output_lengths(src_mask, config.max_len_a, config.max_len_b, max_length_cap)
    if config.sample:
        return sample(model, src, src_mask, max_lengths, config)
    fusion = language_model_scorers(model, config, src.size(0), src.device)
    if config.ctc_weight > 0:
        return joint_ctc_search(model, src, src_mask, max_lengths, config, fusion)
    if config.beam_size == 1 and not fusion:
        return [[h] for h in greedy_search(model, src, src_mask, max_lengths)]
    return beam_search(
        model, src, src_mask, max_lengths, config.beam_size, config.length_penalty,
        config.n_best, scorers=fusion,
    )  # fmt: skip


def language_model_scorers(
    model: Any, config: DecodingConfig, batch: int, device: torch.device
) -> list[tuple[float, PrefixScorer]]:
    """The language model's scorer at ``config.lm_weight`` (none at weight 0)."""
    if config.lm_weight == 0:
        return []
    language_model = getattr(model, "language_model", None)
    if language_model is None:
        raise UserError(
            "decoding.lm_weight > 0 needs a language model: train with model.language_model "
            "set (e.g. model/language_model=ngram)"
        )
    return [(config.lm_weight, NgramScorer(language_model, batch, device))]


def joint_ctc_search(
    model: Any,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    max_lengths: torch.Tensor,
    config: DecodingConfig,
    fusion: Sequence[tuple[float, PrefixScorer]] = (),
) -> list[list[Hypothesis]]:
    """Beam search with the CTC prefix scorer at ``config.ctc_weight`` (Watanabe et al.
    2017) and the ``fusion`` scorers; at weight 1 with beam size 1, CTC's best path (the
    decoder is not consulted)."""
    if getattr(model, "ctc_head", None) is None:
        raise UserError("decoding.ctc_weight > 0 needs a model with a CTC head (model.net.ctc)")
    memory, log_probs, lengths = model.encode_with_ctc(src, src_mask)
    if config.ctc_weight == 1.0 and config.beam_size == 1:
        best = ctc_best_path(log_probs, lengths, model.pad_id)
        return [[Hypothesis(tokens, score, True)] for tokens, score in best]
    scorer = CTCPrefixScorer(log_probs, lengths, model.pad_id, model.eos_id)
    max_lengths = torch.minimum(max_lengths, lengths + 1)  # CTC: a token per frame at most, + EOS
    return beam_search(
        model, src, src_mask, max_lengths, config.beam_size, config.length_penalty,
        config.n_best, scorers=[(config.ctc_weight, scorer), *fusion], memory=memory,
    )  # fmt: skip


def sample(
    model: StepModel,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    max_lengths: torch.Tensor,
    config: DecodingConfig,
) -> list[list[Hypothesis]]:
    """``config.n_best`` samples per sentence, drawn in one batch from a generator seeded with
    ``config.seed``; each sentence's samples sorted by log-probability."""
    generator = torch.Generator(device=src.device).manual_seed(config.seed)
    choose = Sampler(generator, config.temperature, config.top_k, config.top_p)
    copies = config.n_best
    rows = torch.arange(src.size(0), device=src.device).repeat_interleave(copies)
    drawn = greedy_search(
        model, src[rows], src_mask[rows], max_lengths[rows], choose=choose
    )  # sentence i's samples at rows i * copies ...
    return [
        sorted(drawn[i : i + copies], key=lambda h: h.score, reverse=True)
        for i in range(0, len(drawn), copies)
    ]


DECODING_PRECISIONS = ("32-true", "bf16-mixed")  # the trainer's names for fp32 and bf16 autocast


def decoding_autocast(device_type: str, precision: str) -> AbstractContextManager[None]:
    """Decoding at ``precision``: bf16-mixed runs the model under bf16 autocast (scores stay
    fp32, see ``_log_probs``); 32-true leaves it in fp32."""
    if precision not in DECODING_PRECISIONS:
        raise ValueError(f"precision={precision} is not one of {', '.join(DECODING_PRECISIONS)}")
    return torch.autocast(device_type, torch.bfloat16, enabled=precision == "bf16-mixed")
