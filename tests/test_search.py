"""Greedy and beam search through the step interface, for every family."""

import pytest
import torch

from encdec.decoding.search import (
    DecodingConfig,
    Sampler,
    beam_search,
    decode,
    greedy_search,
    length_penalty,
    max_output_lengths,
)
from encdec.utils.errors import UserError
from tests.conftest import random_batch


def test_greedy_equals_beam_of_one(tiny_model):
    src, mask = random_batch()
    limits = max_output_lengths(mask, 1.5, 5, cap=100)
    greedy = greedy_search(tiny_model, src, mask, limits)
    beam = beam_search(tiny_model, src, mask, limits, beam_size=1)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]


def test_batched_search_equals_one_sentence_at_a_time(tiny_model):
    """Finished sentences leave the batch; that must not change anyone's output."""
    src, mask = random_batch(batch=5, seed=1)
    limits = max_output_lengths(mask, 1.0, 4, cap=100)
    batched = beam_search(tiny_model, src, mask, limits, beam_size=3, alpha=0.6, n_best=2)
    for row in range(src.size(0)):
        alone = beam_search(
            tiny_model,
            src[row : row + 1],
            mask[row : row + 1],
            limits[row : row + 1],
            beam_size=3,
            alpha=0.6,
            n_best=2,
        )[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batched[row]]
        for a, b in zip(alone, batched[row], strict=True):
            assert abs(a.score - b.score) < 1e-4
    greedy = greedy_search(tiny_model, src, mask, limits)
    for row in range(src.size(0)):
        alone = greedy_search(
            tiny_model, src[row : row + 1], mask[row : row + 1], limits[row : row + 1]
        )[0]
        assert alone.tokens == greedy[row].tokens


def test_nbest_sorted_and_limits_respected(tiny_model):
    src, mask = random_batch(seed=2)
    limits = max_output_lengths(mask, 0.5, 2, cap=100)
    results = beam_search(tiny_model, src, mask, limits, beam_size=4, alpha=1.0, n_best=3)
    for row, hypotheses in enumerate(results):
        assert len(hypotheses) == 3
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert all(len(h.tokens) <= int(limits[row]) for h in hypotheses)
        assert all(t not in (0, 2, 3) for h in hypotheses for t in h.tokens)  # no PAD/BOS/EOS


class NeverEnds:
    """A step model whose EOS probability is zero: the search must still answer."""

    bos_id, eos_id, pad_id, vocab = 2, 3, 0, 8

    def encode(self, src, src_mask):
        return _Rows(src_mask)

    def init_state(self, memory):
        return _Rows(memory.tensor)

    def step(self, prev_tokens, state, memory):
        logits = torch.zeros(prev_tokens.size(0), self.vocab)
        logits[:, self.eos_id] = float("-inf")
        logits[:, 5] = 1.0  # token 5 is always best
        return logits, state, None


class _Rows:
    def __init__(self, tensor):
        self.tensor = tensor

    def reorder(self, index):
        return _Rows(self.tensor.index_select(0, index))


def test_beam_without_finished_hypothesis_returns_best_partial():
    src, mask = random_batch(batch=2, src_len=4)
    limits = torch.tensor([3, 5])
    results = beam_search(NeverEnds(), src, mask, limits, beam_size=3, n_best=2)
    assert [r[0].tokens for r in results] == [[5] * 3, [5] * 5]
    assert all(not h.finished for r in results for h in r)
    assert len(results[0]) == 2
    greedy = greedy_search(NeverEnds(), src, mask, limits)
    assert [h.tokens for h in greedy] == [[5] * 3, [5] * 5]


def test_length_helpers_and_decoding_config():
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    assert max_output_lengths(mask, 1.5, 2, cap=9).tolist() == [8, 9]
    assert length_penalty(1, 0.0) == 1.0
    assert abs(length_penalty(7, 1.0) - 2.0) < 1e-9
    assert DecodingConfig(beam_size=5).suffix == "_beam5"
    assert DecodingConfig().suffix == ""
    assert DecodingConfig(sample=True, n_best=4).suffix == "_sample"
    bad_settings = (
        {"beam_size": 0},
        {"beam_size": 2, "n_best": 3},
        {"n_best": 2},  # greedy search has one output
        {"sample": True, "beam_size": 4},
        {"sample": True, "temperature": 0.0},
        {"sample": True, "top_k": -1},
        {"sample": True, "top_p": 0.0},
    )
    for bad in bad_settings:
        with pytest.raises(UserError, match=r"decoding\."):
            DecodingConfig(**bad)


def draws(sampler: Sampler, probs: list[float], count: int = 4000) -> torch.Tensor:
    """How often each token is drawn from ``probs`` (one row per draw)."""
    log_probs = torch.tensor(probs).log().expand(count, -1)
    return torch.bincount(sampler(log_probs), minlength=len(probs)) / count


def test_sampler_follows_the_distribution_and_its_cutoffs():
    probs = [0.5, 0.3, 0.15, 0.05]
    generator = torch.Generator().manual_seed(0)
    plain = draws(Sampler(generator), probs)
    assert torch.allclose(plain, torch.tensor(probs), atol=0.03)
    # top-k 2: renormalised over the two best (5/8, 3/8)
    top_two = draws(Sampler(generator, top_k=2), probs)
    assert torch.allclose(top_two, torch.tensor([5 / 8, 3 / 8, 0, 0]), atol=0.03)
    # nucleus 0.8: the smallest set reaching 0.8 is {0, 1}; 0.81 needs token 2 as well
    nucleus = draws(Sampler(generator, top_p=0.8), probs)
    assert nucleus[2:].sum() == 0 and nucleus[1] > 0.3
    assert draws(Sampler(generator, top_p=0.81), probs)[2] > 0.1
    # temperature 0.5 squares the odds: 0.5^2 : 0.3^2 : ...
    squared = torch.tensor(probs) ** 2
    cold = draws(Sampler(generator, temperature=0.5), probs)
    assert torch.allclose(cold, squared / squared.sum(), atol=0.03)


def test_sampling_is_seeded_and_greedy_at_top_k_one(tiny_model):
    src, mask = random_batch(seed=4)
    settings = {"max_len_a": 1.5, "max_len_b": 5}
    greedy = decode(tiny_model, src, mask, DecodingConfig(**settings), 100)
    top_one = decode(tiny_model, src, mask, DecodingConfig(sample=True, top_k=1, **settings), 100)
    assert [h[0].tokens for h in top_one] == [h[0].tokens for h in greedy]
    assert [h[0].score for h in top_one] == pytest.approx([h[0].score for h in greedy])

    def samples(seed: int) -> list[list[list[int]]]:
        config = DecodingConfig(sample=True, n_best=3, seed=seed, **settings)
        results = decode(tiny_model, src, mask, config, 100)
        for hypotheses in results:
            assert len(hypotheses) == 3
            scores = [h.score for h in hypotheses]
            assert scores == sorted(scores, reverse=True)
        return [[h.tokens for h in hypotheses] for hypotheses in results]

    assert samples(1) == samples(1)
    assert samples(1) != samples(2)  # an untrained model spreads its probability
