"""Metrics equal their reference implementations and survive a DDP-style gather."""

import sacrebleu
import torch
from torchmetrics.text import Perplexity

from encdec.metrics.speech import SpeechMetrics, normalize_transcript
from encdec.metrics.text import TeacherForcedMetrics, TextMetrics


def test_teacher_forced_metrics_match_reference():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    target = torch.randint(1, 11, (3, 5))
    target[1, 3:] = 0
    target[2, 1:] = 0
    metric = TeacherForcedMetrics()
    metric.update(logits[:2], target[:2], torch.tensor(7.0), pad_id=0)
    metric.update(logits[2:], target[2:], torch.tensor(2.0), pad_id=0)
    values = metric.compute()

    reference = Perplexity(ignore_index=0)
    reference.update(logits, target)
    torch.testing.assert_close(values["ppl"], reference.compute())
    real = target != 0
    expected_accuracy = ((logits.argmax(-1) == target) & real).sum() / real.sum()
    torch.testing.assert_close(values["token_accuracy"], expected_accuracy)
    torch.testing.assert_close(values["loss"], torch.tensor(9.0) / real.sum())


def test_text_metrics_match_sacrebleu_and_keep_unicode_and_empty_strings():
    hypotheses = ["Ein Hund läuft über die Wiese.", "", "A man rides a bike ."]
    references = ["Ein Hund rennt über die Wiese.", "Leer", "A man rides a bike ."]
    metric = TextMetrics()
    metric.update(hypotheses[:2], references[:2])
    metric.update(hypotheses[2:], references[2:])
    assert metric.texts() == (hypotheses, references)
    values = metric.compute()
    assert abs(float(values["bleu"]) - sacrebleu.corpus_bleu(hypotheses, [references]).score) < 1e-4
    assert abs(float(values["chrf"]) - sacrebleu.corpus_chrf(hypotheses, [references]).score) < 1e-4
    assert abs(float(values["exact_match"]) - 100 / 3) < 1e-4
    assert "tok:13a" in metric.signature and "case:mixed" in metric.signature


def test_text_metrics_after_gather_equal_single_process():
    """Under DDP torchmetrics concatenates list states: the result must not change."""
    hypotheses, references = ["a b c", "d e", "f"], ["a b c", "d x", "g"]
    single = TextMetrics()
    single.update(hypotheses, references)
    gathered = TextMetrics()
    gathered.update(hypotheses, references)
    gathered.hypotheses = torch.cat(gathered.hypotheses)  # what a sync leaves behind
    gathered.references = torch.cat(gathered.references)
    assert gathered.texts() == single.texts()
    assert float(gathered.compute()["bleu"]) == float(single.compute()["bleu"])


def edit_distance(hypothesis: list[str], reference: list[str]) -> int:
    """Levenshtein distance by the textbook dynamic program (substitution, insertion, deletion)."""
    previous = list(range(len(reference) + 1))
    for i, word in enumerate(hypothesis, 1):
        current = [i]
        for j, expected in enumerate(reference, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != expected))
            )
        previous = current
    return previous[-1]


def test_speech_metrics_are_corpus_error_rates_on_normalized_text():
    hypotheses = ["A dog runs on the grass!", "two men, one bike", "", "it's o'clock"]
    references = ["a dog runs in the grass", "Two men ride one bike.", "a cat", "It's O'Clock."]
    metric = SpeechMetrics()
    metric.update(hypotheses[:2], references[:2])
    metric.update(hypotheses[2:], references[2:])
    values = metric.compute()
    normalized = [(normalize_transcript(h), normalize_transcript(r)) for h, r in
                  zip(hypotheses, references, strict=True)]  # fmt: skip
    word_errors = sum(edit_distance(h.split(), r.split()) for h, r in normalized)
    words = sum(len(r.split()) for _, r in normalized)
    char_errors = sum(edit_distance(list(h), list(r)) for h, r in normalized)
    chars = sum(len(r) for _, r in normalized)
    assert word_errors == 1 + 1 + 2 + 0
    torch.testing.assert_close(values["wer"], torch.tensor(100.0 * word_errors / words))
    torch.testing.assert_close(values["cer"], torch.tensor(100.0 * char_errors / chars))
    metric.reset()
    metric.update(["a b"], ["a b"])
    assert float(metric.compute()["wer"]) == 0.0


def test_transcripts_are_normalized_as_documented():
    assert normalize_transcript("A dog's toy-box!  ") == "a dog's toy box"
    assert normalize_transcript("'Quoted' — ÉCOLE_2") == "quoted école 2"
    assert normalize_transcript("Ⅻ ﬁne") == "xii fine"  # NFKC
