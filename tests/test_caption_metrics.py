"""Captioning metrics against values computed by hand from their definitions, and after a
DDP-style gather."""

import math

import pytest
import torch

from encdec.data.caption_readers import read_flickr8k_captions
from encdec.metrics.captions import (
    CaptionMetrics,
    CiderD,
    caption_words,
    corpus_bleu,
    document_frequencies,
    longest_common_subsequence,
    rouge_l,
)
from tests.conftest import SHARED_DATA


def test_caption_words_lowercase_and_drop_punctuation():
    assert caption_words("A dog's tri-colored ball , on grass .") == [
        "a",
        "dog's",
        "tri-colored",
        "ball",
        "on",
        "grass",
    ]


def test_bleu_by_hand():
    # unigrams: 'the' x2 clipped to 1, 'cat' x2 clipped to 1 -> 2/4; brevity: 4 > 3, no penalty
    # bigrams: 'the cat' x2 clipped to 1 of 3 -> 1/3; BLEU-2 = sqrt(1/2 * 1/3)
    assert corpus_bleu(["the cat the cat"], [["the cat sat"]], 1)[0] == pytest.approx(50.0)
    assert corpus_bleu(["the cat the cat"], [["the cat sat"]], 2)[0] == pytest.approx(
        100 * math.sqrt(1 / 6)
    )
    # n-grams match against any reference: unigrams 3/3, bigrams 'red circle' 1/2; the closest
    # reference length is 3 (= the hypothesis), so no brevity penalty
    refs = [["a blue circle", "red circle"]]
    assert corpus_bleu(["A red circle ."], refs, 1)[0] == pytest.approx(100.0)
    assert corpus_bleu(["A red circle ."], refs, 2)[0] == pytest.approx(100 * math.sqrt(0.5))
    # a 2-word hypothesis, closest reference 3 words: brevity penalty exp(1 - 3/2)
    assert corpus_bleu(["red circle"], [["a red circle", "a big red circle"]], 1)[
        0
    ] == pytest.approx(100 * math.exp(1 - 3 / 2))


def test_bleu_with_different_numbers_of_references_per_image():
    hypotheses = ["a red circle", "a blue square"]
    references = [["a red circle"], ["a green square", "a blue square", "blue square"]]
    assert corpus_bleu(hypotheses, references, 4)[0] == pytest.approx(0.0)  # 3-word captions
    assert corpus_bleu(hypotheses, references, 3)[0] == pytest.approx(100.0)


def test_rouge_l_by_hand():
    assert longest_common_subsequence("a b c d".split(), "a x c d".split()) == 3
    # LCS 'a red circle' = 3 of 4 words each way: P = R = 3/4 -> F = 3/4 for any beta
    assert rouge_l("a red circle left", ["a small red circle"]) == pytest.approx(0.75)
    # precision and recall are maximised separately over the references: P = 1 (first), R = 1
    assert rouge_l("a red circle", ["a red circle left of a square", "red"]) == pytest.approx(1.0)
    # P = 1, R = 3/7: F = (1 + b^2) P R / (R + b^2 P), b = 1.2
    recall, beta2 = 3 / 7, 1.44
    assert rouge_l("a red circle", ["a red circle left of a square"]) == pytest.approx(
        (1 + beta2) * recall / (recall + beta2)
    )
    assert rouge_l("", ["a red circle"]) == 0.0


def test_cider_d_by_hand():
    """Training references: 'red circle' and 'blue circle' (2 images, so idf = log 2 - log df).
    Weights: red, blue, 'red circle', 'blue circle' and unseen n-grams log 2; circle 0."""
    training = [["red circle"], ["blue circle"]]
    frequencies = document_frequencies(training)
    assert frequencies[("circle",)] == 2 and frequencies[("red", "circle")] == 1
    cider = CiderD(frequencies, len(training))
    # identical: cosine 1 for unigrams and bigrams, no 3-/4-grams -> mean 1/2, x 10
    assert cider.image_score("red circle", ["red circle"]) == pytest.approx(5.0)
    # the only weighted unigram differs, bigrams differ -> 0
    assert cider.image_score("blue circle", ["red circle"]) == pytest.approx(0.0)
    # unigrams cosine 1 (circle weighs 0); bigrams: hypothesis (red circle, circle circle) both
    # log 2, reference one of them -> 1/sqrt 2; lengths (bigram counts) 2 vs 1 -> exp(-1/72)
    expected = (1 + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72) * 10
    assert cider.image_score("red circle circle", ["red circle"]) == pytest.approx(expected)
    # clipping: 'red' twice weighs 2 log 2 but counts min(2 log 2, log 2) against the
    # reference: unigram value log2^2 / (2 log 2 * log 2) = 1/2; bigrams 0 -> 1/2 / 4 x 10
    assert cider.image_score("red red", ["red circle"]) == pytest.approx(1.25)
    # several references: the mean of the similarities
    both = cider.image_score("red circle", ["red circle", "blue circle"])
    assert both == pytest.approx((5.0 + cider.image_score("red circle", ["blue circle"])) / 2)


def test_caption_metrics_report_percent_with_evaluated_document_frequencies():
    metric = CaptionMetrics()
    metric.update(["red circle", "blue square"], [["red circle"], ["blue circle"]])
    values = metric.compute()
    assert list(values) == list(CaptionMetrics.names)
    # frequencies from these two images' references: idf(red) = log 2, idf(circle) = 0, ...
    cider = CiderD(document_frequencies([["red circle"], ["blue circle"]]), 2)
    expected = (
        cider.image_score("red circle", ["red circle"])
        + cider.image_score("blue square", ["blue circle"])
    ) / 2
    assert float(values["cider"]) == pytest.approx(100 * expected)
    # 'red circle' scores 5.0 (identical); 'blue square' vs 'blue circle': unigram cosine
    # 1/sqrt 2 (circle weighs 0, square is unseen: log 2), nothing else -> 10 / (4 sqrt 2)
    assert float(values["cider"]) == pytest.approx(100 * (5.0 + 10 / (4 * math.sqrt(2))) / 2)
    assert float(values["rouge_l"]) == pytest.approx(75.0)
    assert "tok:none" in metric.signature and "nrefs:1" in metric.signature
    with pytest.raises(ValueError, match="no reference"):
        metric.update(["a"], [[]])


def test_training_document_frequencies_are_a_named_option():
    metric = CaptionMetrics(document_frequencies="training")
    assert metric.needs_training_references and not CaptionMetrics().needs_training_references
    metric.update(["red circle"], [["red circle"]])
    with pytest.raises(ValueError, match="no training document frequencies"):
        metric.compute()
    # from the training images 'red circle' / 'blue circle'; evaluated alone, every n-gram
    # of the one image would have idf 0 and CIDEr-D would be 0
    metric.set_document_frequencies([["red circle"], ["blue circle"]])
    assert float(metric.compute()["cider"]) == pytest.approx(500.0)
    evaluated = CaptionMetrics()
    evaluated.update(["red circle"], [["red circle"]])
    assert float(evaluated.compute()["cider"]) == 0.0
    with pytest.raises(ValueError, match="document_frequencies='train'"):
        CaptionMetrics(document_frequencies="train")


def test_caption_metrics_after_gather_equal_single_process():
    hypotheses = ["a small red circle", "a large blue square right of a small red circle", ""]
    references = [
        ["a small red circle"],
        [
            "a small red circle left of a large blue square",
            "a large blue square right of a small red circle",
        ],
        ["a small green triangle"],
    ]
    training = [["a small red circle"], ["a large blue square"], ["a small green triangle"]]
    single = CaptionMetrics(document_frequencies="training")
    single.update(hypotheses, references)
    gathered = CaptionMetrics(document_frequencies="training")
    gathered.update(hypotheses[:2], references[:2])  # rank 0
    gathered.update(hypotheses[2:], references[2:])  # rank 1
    gathered.hypotheses = torch.cat(gathered.hypotheses)  # what a sync leaves behind
    gathered.references = torch.cat(gathered.references)
    assert gathered.texts() == single.texts()
    for metric in (single, gathered):
        metric.set_document_frequencies(training)
    expected = single.compute()
    for name, value in gathered.compute().items():
        assert float(value) == float(expected[name]), name


@pytest.mark.slow
def test_metrics_equal_coco_caption_on_flickr8k_test_captions():
    """The 1,000 Flickr8k test images, the first reference of each scored as a hypothesis
    against the other four: BLEU-1..4, ROUGE-L and CIDEr-D equal coco-caption's reference code
    (pycocoevalcap, on the same words) to three decimals of its scale."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    directory = SHARED_DATA / "flickr8k"
    if not directory.is_dir():
        pytest.skip("../shared/data is absent")
    captions = read_flickr8k_captions(directory / "Flickr8k.token.txt")
    names = (directory / "Flickr_8k.testImages.txt").read_text().split()
    assert len(names) == 1000
    hypotheses = [captions[name][0] for name in names]
    references = [captions[name][1:] for name in names]
    ours = CaptionMetrics()
    ours.update(hypotheses, references)
    values = {name: float(value) / 100 for name, value in ours.compute().items()}

    def words(text: str) -> str:
        return " ".join(caption_words(text))

    candidates = {i: [words(h)] for i, h in enumerate(hypotheses)}
    ground_truth = {i: [words(r) for r in refs] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(ground_truth, candidates, verbose=0)
    expected = {f"bleu_{n}": bleu[n - 1] for n in range(1, 5)}
    expected["rouge_l"] = Rouge().compute_score(ground_truth, candidates)[0]
    expected["cider"] = Cider().compute_score(ground_truth, candidates)[0]
    for name, value in expected.items():
        assert values[name] == pytest.approx(value, abs=5e-4), name
    assert values["cider"] == pytest.approx(0.7887, abs=5e-4)  # the figure of issue 16
