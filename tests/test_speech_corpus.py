"""The offline speech corpus: synthesized by espeak-ng, festival and flite, varied by sox,
whole speakers and one whole engine held out, deterministic per seed, built once."""

import json
from functools import partial
from pathlib import Path

import pytest
import soundfile

from encdec.data import speech_corpus
from encdec.data.command_grammar import command_sentences
from encdec.data.speech_corpus import build_speech_corpus, speaker_table
from encdec.data.speech_readers import SynthesizedSpeechReader
from encdec.utils.errors import UserError

SPLITS = {"train": 3, "val": 1, "test": 1, "test_unseen_engine": 2}


def tiny_corpus(cache_dir: Path, seed: int = 0) -> Path:
    texts = command_sentences({"train": 40, "val": 8, "test": 8}, seed=seed)
    speakers = speaker_table(SPLITS, held_out_engine="flite", seed=seed)
    return build_speech_corpus(cache_dir, texts, speakers, utterances_per_speaker=3, seed=seed)


def manifest(directory: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (directory / f"{split}.jsonl").read_text().splitlines()]


def test_splits_hold_out_whole_speakers_and_one_engine(tmp_path):
    corpus = tiny_corpus(tmp_path)
    rows = {split: manifest(corpus, split) for split in SPLITS}
    assert {split: len(r) for split, r in rows.items()} == {s: 3 * n for s, n in SPLITS.items()}
    speakers = {split: {row["speaker"] for row in r} for split, r in rows.items()}
    assert sum(len(s) for s in speakers.values()) == len(set().union(*speakers.values()))
    table = (corpus / "speakers.tsv").read_text().splitlines()
    engines = {line.split("\t")[1]: line.split("\t")[2] for line in table[1:]}
    assert {engines[s] for s in speakers["test_unseen_engine"]} == {"flite"}
    assert {engines[s] for s in speakers["train"]} == {"espeak-ng", "festival"}
    assert {engines[s] for split in ("val", "test") for s in speakers[split]} <= {
        "espeak-ng",
        "festival",
    }
    train_texts = {row["text"] for row in rows["train"]}
    assert not train_texts & {row["text"] for row in rows["test"] + rows["val"]}


def test_audio_is_16khz_mono_and_as_long_as_the_manifest_says(tmp_path):
    corpus = tiny_corpus(tmp_path)
    for row in manifest(corpus, "train") + manifest(corpus, "test_unseen_engine"):
        audio, rate = soundfile.read(corpus / row["audio_filepath"])
        assert rate == 16000 and audio.ndim == 1
        assert len(audio) / rate == pytest.approx(row["duration"], abs=1e-3)
        assert 0.3 < row["duration"] < 10 and abs(audio).max() > 0.05  # speech, not silence


def test_a_seed_makes_the_same_corpus_and_it_is_built_once(tmp_path, monkeypatch):
    first, second = tiny_corpus(tmp_path / "a"), tiny_corpus(tmp_path / "b")
    assert first.name == second.name
    for row in manifest(first, "train"):
        path = row["audio_filepath"]
        assert (first / path).read_bytes() == (second / path).read_bytes()
    assert tiny_corpus(tmp_path / "a", seed=1).name != first.name

    def no_synthesis(job):
        raise AssertionError("a built corpus was synthesized again")

    monkeypatch.setattr(speech_corpus, "synthesize", no_synthesis)
    assert tiny_corpus(tmp_path / "a") == first


def test_more_training_speakers_leave_the_held_out_voices_and_sentences_as_they_were(tmp_path):
    texts = command_sentences({"train": 40, "val": 8, "test": 8}, seed=0)
    plans = []
    for train_speakers in (3, 9):
        speakers = speaker_table({**SPLITS, "train": train_speakers}, "flite", seed=0)
        jobs, manifests = speech_corpus.plan(tmp_path, texts, speakers, 3, 16000, seed=0)
        plans.append((speakers, manifests, {job[0].name: job[4] for job in jobs}))
    (few, few_rows, few_noise), (many, many_rows, many_noise) = plans
    assert many["train"][:3] == few["train"] and len(many["train"]) == 9
    for split in ("val", "test", "test_unseen_engine"):
        assert many[split] == few[split]
        assert many_rows[split] == few_rows[split]
        assert all(many_noise[s.name] == few_noise[s.name] for s in few[split])


def test_a_missing_synthesizer_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(
        speech_corpus.shutil, "which", lambda name: None if name == "flite" else name
    )
    with pytest.raises(UserError, match="'flite' is not installed"):
        tiny_corpus(tmp_path)


def test_a_missing_festival_voice_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(speech_corpus.NAMED_VOICES, "festival", ("no_such_diphone",))
    with pytest.raises(UserError, match="festival failed on 3 sentences .*voice_no_such_diphone"):
        tiny_corpus(tmp_path)


def test_utterances_per_speaker_per_split_must_name_every_split():
    texts = partial(command_sentences, {"train": 40, "val": 8, "test": 8}, seed=0)
    reader = SynthesizedSpeechReader(texts, SPLITS, {"train": 2, "val": 3, "test": 3,
                                                     "test_unseen_engine": 3})  # fmt: skip
    assert reader.utterances_per_speaker["train"] == 2
    with pytest.raises(UserError, match=r"utterances_per_speaker gives no count for \['val'"):
        SynthesizedSpeechReader(texts, SPLITS, {"train": 2})
