"""Speech data: audio read as mono at the model's rate (windowed-sinc resampling), JSONL
manifests and Hugging Face audio datasets, bad input as one clear error or a counted skip, and
the data module's frame-budget batches."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from encdec.data.audio import AudioError, read_audio
from encdec.data.speech import SpeechDataModule, collate_speech
from encdec.data.speech_readers import HFAudioReader, ManifestReader, read_manifest
from encdec.modules.resampling import resample
from encdec.utils.errors import UserError

RATE = 16000


def tone(seconds: float, rate: int, hz: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def write_corpus(directory: Path, rows: dict[str, list[tuple[str, float, int]]]) -> Path:
    """``<split>.jsonl`` manifests of tone WAVs: (text, seconds, sample rate) per utterance."""
    for split, utterances in rows.items():
        lines = []
        for n, (text, seconds, rate) in enumerate(utterances):
            relative = f"wav/{split}{n}.wav"
            (directory / "wav").mkdir(parents=True, exist_ok=True)
            soundfile.write(directory / relative, tone(seconds, rate, 300 + 50 * n), rate)
            lines.append(json.dumps({"audio_filepath": relative, "text": text}))
        (directory / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return directory


@pytest.mark.parametrize(("from_rate", "to_rate"), [(8000, 16000), (44100, 16000), (16000, 8000)])
def test_resampling_keeps_a_tone_below_both_nyquist_rates(from_rate, to_rate):
    wave = torch.from_numpy(tone(1.0, from_rate))
    out = resample(wave, from_rate, to_rate)
    assert len(out) == to_rate
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(to_rate) / to_rate)
    inner = slice(100, -100)  # the edges see the zero padding
    assert np.abs(out.numpy()[inner] - expected[inner]).max() < 2e-3


def test_resampling_removes_what_the_lower_rate_cannot_hold():
    wave = torch.from_numpy(tone(1.0, 16000, hz=6000.0))  # above 8 kHz audio's 4 kHz Nyquist
    assert resample(wave, 16000, 8000)[100:-100].abs().max() < 0.01


def test_stereo_and_other_rates_are_read_as_mono_at_the_model_rate(tmp_path):
    soundfile.write(tmp_path / "stereo.wav", tone(0.5, 44100, channels=2), 44100)
    wave, rate, channels = read_audio(tmp_path / "stereo.wav", RATE)
    assert (rate, channels, wave.shape) == (44100, 2, (8000,))
    flac = tmp_path / "a.flac"
    soundfile.write(flac, tone(0.25, RATE), RATE)
    assert torch.equal(read_audio(flac.read_bytes(), RATE)[0], read_audio(flac, RATE)[0])


def test_unreadable_and_empty_audio_are_audio_errors(tmp_path):
    (tmp_path / "text.wav").write_text("not audio")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), RATE)
    with pytest.raises(AudioError, match="unreadable audio"):
        read_audio(tmp_path / "text.wav", RATE)
    with pytest.raises(AudioError, match="empty audio"):
        read_audio(tmp_path / "empty.wav", RATE)


def test_a_manifest_gives_relative_paths_and_header_durations(tmp_path):
    write_corpus(tmp_path, {"train": [("a dog", 0.5, RATE), ("two dogs", 1.25, 8000)]})
    utterances = ManifestReader(str(tmp_path)).read("train", tmp_path / "cache")
    assert [u.text for u in utterances] == ["a dog", "two dogs"]
    assert [u.duration for u in utterances] == [0.5, 1.25]
    assert Path(utterances[0].audio) == tmp_path / "wav" / "train0.wav"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "train.jsonl:2: not a JSON line"),
        ('{"audio_filepath": "wav/train0.wav"}', "train.jsonl:2: no 'text' string"),
        ('{"text": "a cat"}', "train.jsonl:2: no 'audio_filepath' string"),
        ('["wav/train0.wav", "a cat"]', "train.jsonl:2: no 'audio_filepath' string"),
    ],
)
def test_a_bad_manifest_line_is_an_error_naming_file_and_line(tmp_path, line, message):
    write_corpus(tmp_path, {"train": [("a dog", 0.5, RATE)]})
    with open(tmp_path / "train.jsonl", "a") as manifest:
        manifest.write(line + "\n")
    with pytest.raises(UserError, match=message):
        read_manifest(tmp_path / "train.jsonl")


def test_missing_audio_files_are_skipped_and_counted(tmp_path, caplog):
    write_corpus(tmp_path, {"train": [("a dog", 0.5, RATE), ("a cat", 0.5, RATE)]})
    (tmp_path / "wav" / "train1.wav").unlink()
    with caplog.at_level(logging.WARNING):
        utterances = read_manifest(tmp_path / "train.jsonl")
    assert [u.text for u in utterances] == ["a dog"]
    assert "skipped 1 of 2 utterances" in caplog.text and "train1.wav" in caplog.text


def test_a_hugging_face_audio_dataset_reads_from_a_local_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    write_corpus(tmp_path / "files", {"train": [("a dog", 0.5, RATE), ("a cat", 0.75, 22050)]})
    paths = [str(tmp_path / "files" / "wav" / f"train{n}.wav") for n in range(2)]
    rows = {"speech": [{"path": p, "bytes": Path(p).read_bytes()} for p in paths],
            "sentence": ["a dog", "a cat"]}  # fmt: skip
    audio = datasets.Dataset.from_dict(rows).cast_column("speech", datasets.Audio())
    dataset = datasets.DatasetDict({"validation": audio})  # an Audio column, as on the hub
    dataset.save_to_disk(str(tmp_path / "hf"))
    reader = HFAudioReader(str(tmp_path / "hf"), "speech", "sentence", splits={"val": "validation"})
    utterances = reader.read("val", tmp_path)
    assert [u.text for u in utterances] == ["a dog", "a cat"]
    assert [u.duration for u in utterances] == pytest.approx([0.5, 0.75], abs=1e-4)
    assert read_audio(utterances[1].audio, RATE)[0].shape == (12000,)
    with pytest.raises(UserError, match="has no column 'text'"):
        HFAudioReader(str(tmp_path / "hf"), "speech", splits={"val": "validation"}).read(
            "val", tmp_path
        )
    with pytest.raises(UserError, match="has no split 'test'"):
        reader.read("test", tmp_path)


def speech_data(tmp_path: Path, **settings: object) -> SpeechDataModule:
    corpus = write_corpus(
        tmp_path / "corpus",
        {
            "train": [("A dog!", 0.5, RATE), ("Two dogs.", 1.0, 44100), ("cats", 3.0, RATE),
                      ("a hen", 0.2, 8000), ("an ox", 0.3, RATE)],
            "val": [("a dog", 0.5, RATE), ("a cat", 2.5, RATE)],
            "test": [("a dog", 0.5, RATE)],
        },
    )  # fmt: skip
    return SpeechDataModule(
        str(tmp_path / "cache"), ManifestReader(str(corpus)),
        **{"max_frames": 300, "max_duration": 2.0} | settings,
    )  # fmt: skip


def test_the_data_module_batches_under_the_frame_budget(tmp_path, caplog):
    data = speech_data(tmp_path)
    with caplog.at_level(logging.WARNING):
        data.prepare_data()
        data.setup("fit")
    assert "left out 1 of 5 training utterances" in caplog.text  # the 3-s clip
    assert data.tokenizer.decode_target(data.tokenizer.encode_target(["two dogs"])[0]) == (
        "two dogs"
    )  # characters, trained on the normalized transcripts
    batches = list(data.train_dataloader())
    assert sum(len(b["references"]) for b in batches) == 4
    for batch in batches:
        padded_frames = batch["source"].size(1) * 100 // RATE
        assert batch["source"].size(1) % (16 * RATE // 100) == 0  # pad_frames_to: few shapes
        assert padded_frames * len(batch["references"]) <= 300
    durations = sorted(float(m.sum()) / RATE for b in batches for m in b["source_mask"])
    assert durations == pytest.approx([0.2, 0.3, 0.5, 1.0], abs=1e-3)  # 44.1/8 kHz resampled
    assert len(list(data.val_dataloader())) == 2  # evaluation keeps the 2.5-s clip


def test_a_frame_budget_smaller_than_one_clip_is_an_error(tmp_path):
    with pytest.raises(UserError, match="data.max_frames=100 cannot hold one clip"):
        speech_data(tmp_path, max_frames=100)
    with pytest.raises(
        UserError, match=r"data.max_frames=200 cannot hold .*\(208 frames, padded\)"
    ):
        speech_data(tmp_path, max_frames=200, pad_frames_to=16)  # 2 s: 200 frames, 208 padded
    with pytest.raises(UserError, match="data.pad_frames_to=0 must be 1 or more"):
        speech_data(tmp_path, pad_frames_to=0)


def test_undecodable_audio_is_skipped_from_its_batch(tmp_path, caplog):
    data = speech_data(tmp_path)
    data.prepare_data()
    data.setup("validate")
    (tmp_path / "corpus" / "wav" / "val0.wav").write_text("broken")
    dataset = data.datasets["val"]
    with caplog.at_level(logging.WARNING):
        batch = collate_speech([dataset[0], dataset[1]])
    assert batch["references"] == ["a cat"] and "val0.wav: unreadable audio" in caplog.text
    assert collate_speech([dataset[0]]) is None
