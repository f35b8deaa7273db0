"""The n-gram language model of shallow fusion: interpolated Kneser-Ney equal to hand-computed
values, distributions that sum to one, a checkpoint round trip, and beam search that, with the
model alone weighted, finds the sentence it makes most probable."""

import io
import itertools
import math

import pytest
import torch

from encdec.decoding.ngram_language_model import NgramLanguageModel, NgramScorer
from encdec.decoding.search import DecodingConfig, beam_search, decode
from encdec.utils.errors import UserError
from tests.test_joint_ctc_search import Uniform

PAD, A, BOS, EOS, B = 0, 1, 2, 3, 4  # Uniform's vocabulary


def counted_model(order: int = 2) -> NgramLanguageModel:
    sentences = [[A, B], [A], [A, B, B], [B, A]]
    return NgramLanguageModel.estimate(sentences, order, 5, BOS, EOS, impossible=(PAD, BOS))


def test_bigram_probabilities_equal_kneser_ney_by_hand():
    """Sentences "a b" and "a", order 2: bigram counts <s>a 2, ab 1, a</s> 1, b</s> 1 give
    D2 = n1 / (n1 + 2 n2) = 3 / 5; unigram continuation counts a 1, b 1, </s> 2 give D1 = 1/2
    over a uniform base of the three possible tokens."""
    model = NgramLanguageModel.estimate([[A, B], [A]], 2, 5, BOS, EOS, impossible=(PAD, BOS))
    unigram = {EOS: 1.5 / 4 + 0.375 / 3, A: 0.5 / 4 + 0.375 / 3, B: 0.5 / 4 + 0.375 / 3}
    after_a = {t: 0.6 * 2 / 2 * p for t, p in unigram.items()}
    after_a[B] += 0.4 / 2
    after_a[EOS] += 0.4 / 2
    probs = model.log_probs((A,)).exp()
    assert {t: float(probs[t]) for t in after_a} == pytest.approx(after_a)
    assert float(probs[PAD]) == float(probs[BOS]) == 0.0
    unseen_context = model.log_probs((EOS,)).exp()  # never a context: the unigrams
    assert {t: float(unseen_context[t]) for t in unigram} == pytest.approx(unigram)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_every_context_gives_a_distribution(order):
    model = counted_model(order)
    for context in itertools.product((A, B, BOS, EOS), repeat=order - 1):
        probs = model.log_probs(context).double().exp()
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
        assert bool((probs[[A, B, EOS]] > 0).all())  # nothing the decoder may say is ruled out


def test_seen_word_order_is_more_probable_and_the_model_survives_a_checkpoint():
    model = counted_model(3)
    assert model.sentence_log_prob([A, B]) > model.sentence_log_prob([B, B, A, A])
    buffer = io.BytesIO()
    torch.save({"language_model": model.to_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["language_model"]
    loaded = NgramLanguageModel.from_dict(state)
    for sentence in ([A], [A, B], [B, B, A]):
        assert loaded.sentence_log_prob(sentence) == model.sentence_log_prob(sentence)


def test_the_context_cache_keeps_the_most_recent_and_gives_the_same_values():
    model, fresh = counted_model(3), counted_model(3)
    model.cache_size = 2
    contexts = [(BOS, BOS), (BOS, A), (A, B), (BOS, A), (B, B)]
    for context in contexts:
        assert torch.equal(model.log_probs(context), fresh.log_probs(context))
        assert len(model._cache) <= 2
    assert list(model._cache) == [(BOS, A), (B, B)]  # (A, B) was the least recently used


def test_beam_search_with_the_model_alone_finds_its_most_probable_sentence():
    model, search_model = counted_model(3), Uniform()
    src, mask = torch.ones(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool)
    scorer = NgramScorer(model, batch=1, device=torch.device("cpu"))
    limit = 4
    [[best, *_]] = beam_search(
        search_model, src, mask, torch.tensor([limit]), beam_size=16, scorers=[(1.0, scorer)]
    )
    outputs = [y for n in range(limit) for y in itertools.product((A, B), repeat=n)]
    exact = {y: model.sentence_log_prob(y) for y in outputs}
    most_probable = max(exact, key=exact.get)
    assert tuple(best.tokens) == most_probable and best.finished
    assert best.score == pytest.approx(exact[most_probable], abs=1e-5)


def test_fused_scores_weigh_the_decoder_and_the_language_model():
    """At weight w every finished hypothesis scores (1 - w) x the decoder's log-probability
    + w x the language model's; the uniform decoder gives each token log(1/3)."""
    model, search_model = counted_model(2), Uniform()
    search_model.language_model = model
    src, mask = torch.ones(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.bool)
    config = DecodingConfig(beam_size=3, n_best=3, length_penalty=0.0, lm_weight=0.25,
                            max_len_a=0.0, max_len_b=4)  # fmt: skip
    for hypotheses in decode(search_model, src, mask, config, max_length_cap=10):
        for hypothesis in (h for h in hypotheses if h.finished):
            decoder = (len(hypothesis.tokens) + 1) * math.log(1 / 3)  # with </s>
            fused = 0.75 * decoder + 0.25 * model.sentence_log_prob(hypothesis.tokens)
            assert hypothesis.score == pytest.approx(fused, abs=1e-5)


def test_language_model_settings_are_checked():
    src, mask = torch.ones(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.bool)
    with pytest.raises(UserError, match="lm_weight > 0 needs a language model"):
        decode(Uniform(), src, mask, DecodingConfig(beam_size=2, lm_weight=0.2), 50)
    with pytest.raises(UserError, match=r"lm_weight must be in \[0, 1 - ctc_weight\]"):
        DecodingConfig(beam_size=2, ctc_weight=0.5, lm_weight=0.6)
    with pytest.raises(UserError, match="sample=true draws from the decoder alone"):
        DecodingConfig(sample=True, lm_weight=0.1)
    assert DecodingConfig(beam_size=10, ctc_weight=0.3, lm_weight=0.2).suffix == (
        "_beam10_ctc0.3_lm0.2"
    )
    with pytest.raises(UserError, match="order must be 1 or more"):
        NgramLanguageModel.estimate([[A]], 0, 5, BOS, EOS)
    with pytest.raises(UserError, match="no training sentences"):
        NgramLanguageModel.estimate([], 2, 5, BOS, EOS)
