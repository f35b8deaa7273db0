"""Joint CTC/attention beam search: the CTC prefix scorer as a weighted second scorer in the
one beam search. At CTC weight 0 it equals the attention beam; at weight 1 it finds the output
that CTC alone makes most probable (by brute force over every output)."""

import itertools

import pytest
import torch

from encdec.decoding.ctc_prefix_score import CTCPrefixScorer
from encdec.decoding.search import DecodingConfig, beam_search, decode, max_output_lengths
from encdec.utils.errors import UserError
from tests.conftest import VOCAB, random_batch
from tests.test_ctc_prefix_score import brute_force


def test_ctc_weight_zero_equals_the_attention_beam(tiny_model):
    src, mask = random_batch(batch=3, seed=4)
    limits = max_output_lengths(mask, 1.5, 4, cap=100)
    posteriors = torch.randn(3, 9, VOCAB, generator=torch.Generator().manual_seed(0))
    scorer = CTCPrefixScorer(
        posteriors.log_softmax(-1), torch.tensor([9, 6, 8]), tiny_model.pad_id, tiny_model.eos_id
    )
    plain = beam_search(tiny_model, src, mask, limits, beam_size=3, alpha=0.6, n_best=3)
    joint = beam_search(
        tiny_model, src, mask, limits, 3, alpha=0.6, n_best=3, scorers=[(0.0, scorer)]
    )
    for alone, with_ctc in zip(plain, joint, strict=True):
        assert [h.tokens for h in alone] == [h.tokens for h in with_ctc]
        assert [h.score for h in alone] == pytest.approx([h.score for h in with_ctc], abs=1e-5)


class Uniform:
    """An attention model with no opinion: every token equally likely at every step."""

    pad_id, bos_id, eos_id = 0, 2, 3
    vocab = 5  # 0 blank/pad, 1 "a", 2 BOS, 3 EOS, 4 "b"

    class Rows:
        def __init__(self, rows: int) -> None:
            self.rows = rows

        def reorder(self, index: torch.Tensor) -> "Uniform.Rows":
            return Uniform.Rows(len(index))

    def encode(self, src, src_mask):
        return self.Rows(src.size(0))

    def init_state(self, memory):
        return memory

    def step(self, prev_tokens, state, memory):
        return torch.zeros(prev_tokens.size(0), self.vocab), state, None


def test_ctc_weight_one_finds_the_most_probable_ctc_output():
    model, frames = Uniform(), 3
    labels = torch.randn(1, frames, 3, generator=torch.Generator().manual_seed(7)).log_softmax(-1)
    posteriors = torch.full((1, frames, model.vocab), -1e4)  # BOS and EOS are never emitted
    posteriors[:, :, [0, 1, 4]] = labels
    scorer = CTCPrefixScorer(posteriors, torch.tensor([frames]), model.pad_id, model.eos_id)
    src, mask = torch.ones(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool)
    limits = torch.tensor([frames + 1])
    best = beam_search(model, src, mask, limits, beam_size=8, scorers=[(1.0, scorer)])[0][0]
    outputs = [y for n in range(frames + 1) for y in itertools.product((1, 4), repeat=n)]
    as_labels = {1: 1, 4: 2}  # model token -> column of `labels`
    exact = {y: brute_force(labels[0], tuple(as_labels[t] for t in y), exact=True) for y in outputs}
    most_probable = max(exact, key=exact.get)
    assert tuple(best.tokens) == most_probable and best.finished
    assert best.score == pytest.approx(exact[most_probable], abs=1e-4)


def test_ctc_weight_without_a_ctc_head_is_one_clear_error(tiny_model):
    src, mask = random_batch(batch=2, seed=1)
    with pytest.raises(UserError, match="needs a model with a CTC head"):
        decode(tiny_model, src, mask, DecodingConfig(beam_size=2, ctc_weight=0.5), 50)


def test_a_sentence_whose_every_beam_ctc_rules_out_still_gets_an_answer():
    """Two frames allow CTC at most two labels; with the length limit left at five (the
    search's own cap lifted), every beam is impossible by the end, and the sentence still
    gets one (unfinished) hypothesis."""
    model, frames = Uniform(), 2
    posteriors = torch.full((1, frames, model.vocab), -1e4)
    posteriors[:, :, [0, 1, 4]] = torch.log(torch.tensor([0.1, 0.45, 0.45]))
    scorer = CTCPrefixScorer(posteriors, torch.tensor([frames]), model.pad_id, model.eos_id)

    class NoEOS(Uniform):  # an attention model that never ends
        def step(self, prev_tokens, state, memory):
            logits = torch.zeros(prev_tokens.size(0), self.vocab)
            logits[:, self.eos_id] = float("-inf")
            return logits, state, None

    src, mask = torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.bool)
    [hypotheses] = beam_search(
        NoEOS(), src, mask, torch.tensor([5]), beam_size=2, scorers=[(0.5, scorer)]
    )
    assert len(hypotheses) == 1 and not hypotheses[0].finished
