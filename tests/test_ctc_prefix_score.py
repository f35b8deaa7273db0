"""The CTC prefix scorer against brute force: every prefix probability equals the sum over all
frame alignments whose collapsed output starts with the prefix, and the end-of-sentence score
the sum over those that are exactly it; frames past an utterance's length change nothing."""

import itertools
import math

import pytest
import torch

from encdec.decoding.ctc_prefix_score import CTCPrefixScorer

BLANK, A, B, EOS = 0, 1, 2, 3


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    merged = [label for i, label in enumerate(path) if i == 0 or label != path[i - 1]]
    return tuple(label for label in merged if label != BLANK)


def brute_force(log_probs: torch.Tensor, prefix: tuple[int, ...], exact: bool) -> float:
    """log of the summed probability of the alignments (T frames over V labels) whose output
    starts with (or, ``exact``, is) ``prefix``."""
    frames, vocab = log_probs.shape
    total = 0.0
    for path in itertools.product(range(vocab), repeat=frames):
        output = collapse(path)
        if (output == prefix) if exact else (output[: len(prefix)] == prefix):
            total += math.exp(sum(float(log_probs[t, label]) for t, label in enumerate(path)))
    return math.log(total) if total > 0 else float("-inf")


def walk(scorer: CTCPrefixScorer, prefix: tuple[int, ...], utterance: int):
    """The scorer's state after ``prefix`` for one utterance, and its log P(prefix)."""
    state = scorer.init_state().reorder(torch.tensor([utterance]))
    for token in prefix:
        _, candidates = scorer.score(state, torch.tensor([[token]]))
        state = scorer.select(candidates, torch.tensor([0]), torch.tensor([0]))
    return state


@pytest.mark.parametrize("prefix", [(A,), (B,), (A, B), (A, A), (B, B, A), (A, B, A)])
def test_prefix_and_whole_output_probabilities_equal_brute_force(prefix):
    log_probs = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(3)).log_softmax(-1)
    log_probs = torch.cat([log_probs, torch.full((2, 5, 1), -1e4)], dim=2)  # EOS never emitted
    lengths = torch.tensor([5, 4])  # the second utterance: 4 frames, then padding
    scorer = CTCPrefixScorer(log_probs, lengths, blank_id=BLANK, eos_id=EOS)
    for utterance, frames in enumerate(lengths.tolist()):
        real = log_probs[utterance, :frames, :3]
        *head, last = prefix
        state = walk(scorer, tuple(head), utterance)
        increments, candidates = scorer.score(state, torch.tensor([[last, EOS]]))
        assert float(candidates.log_psi[0, 0]) == pytest.approx(
            brute_force(real, prefix, exact=False), abs=1e-4
        )
        assert float(candidates.log_psi[0, 1]) == pytest.approx(
            brute_force(real, tuple(head), exact=True), abs=1e-4
        )
        assert float(increments[0, 0]) == pytest.approx(
            float(candidates.log_psi[0, 0] - state.log_psi[0]), abs=1e-6
        )


def test_the_empty_prefix_has_probability_one_and_blank_is_never_a_candidate():
    log_probs = torch.randn(1, 4, 3).log_softmax(-1)
    log_probs = torch.cat([log_probs, torch.full((1, 4, 1), -1e4)], dim=2)  # EOS never emitted
    scorer = CTCPrefixScorer(log_probs, torch.tensor([4]), blank_id=BLANK, eos_id=EOS)
    state = scorer.init_state()
    assert float(state.log_psi[0]) == 0.0
    increments, _ = scorer.score(state, torch.tensor([[BLANK, A, B]]))
    assert increments[0, 0] == float("-inf")
    # every output starts with A or B or is empty: the three probabilities sum to one
    _, candidates = scorer.score(state, torch.tensor([[A, B, EOS]]))
    assert float(candidates.log_psi.exp().sum()) == pytest.approx(1.0, abs=1e-5)
