"""Greedy and beam search through the step interface, for every family."""

import torch

from encdec.decoding.search import (
    DecodingConfig,
    beam_search,
    greedy_search,
    length_penalty,
    max_output_lengths,
)
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
    for bad in ({"beam_size": 0}, {"beam_size": 2, "n_best": 3}):
        try:
            DecodingConfig(**bad)
        except ValueError as error:
            assert "decoding." in str(error)
        else:
            raise AssertionError(f"{bad} accepted")
