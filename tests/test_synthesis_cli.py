"""Speech synthesis the way a user runs it: train a tiny Tacotron on the single-voice corpus
through the CLI, speak text into a WAV file, judge it with a recognizer through the
intelligibility script, and the console's one-line errors."""

import json
from pathlib import Path

import pytest
import soundfile
from omegaconf import OmegaConf

from encdec.data.tokenization import Seq2SeqTokenizer
from encdec.networks.loading import read_checkpoint
from tests.test_speech_cli import TINY_RECOGNIZER, cli, trained_run
from tests.warm_cli import run_module, run_script

ROOT = Path(__file__).resolve().parents[1]
TINY_CORPUS = [
    "data.source.texts.counts={train:12,val:4,test:4}",
    "data.source.utterances={train:12,val:4,test:4}",
]
TINY_SYNTHESIS = [
    "data=synthesis_commands",
    "model=tacotron",
    *TINY_CORPUS,
    "model.net.embedding_dim=16",
    "model.net.encoder.hidden_size=16",
    "model.net.decoder.hidden_size=32",
    "model.net.decoder.num_layers=1",
    "model.net.prenet.dim=16",
    "model.net.postnet.channels=16",
    "model.net.max_frames=300",
    "callbacks.synthesis_samples.num_samples=2",
    "callbacks.synthesis_samples.griffin_lim_iterations=4",
    "trainer.max_epochs=2",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory) -> Path:
    """A tiny Tacotron trained for two epochs by ``encdec.train``: its run dir."""
    return trained_run(tmp_path_factory.mktemp("synthesis"), TINY_SYNTHESIS)


@pytest.mark.slow
def test_training_selects_on_val_mcd_and_writes_audio_spectrograms_and_alignments(synthesizer):
    config = OmegaConf.load(synthesizer / "config.yaml")
    assert config.monitor == "val/loss" and config.callbacks.model_checkpoint.mode == "min"
    assert config.report_metric == "val/mcd"  # what compare.py reports
    assert not list((synthesizer / "samples").glob("*.md"))  # no text samples for a synthesizer
    record = json.loads((synthesizer / "test_metrics.json").read_text())
    assert {"test/mcd", "test/length_ratio", "test/loss"} <= set(record["metrics"])
    assert "MCD-DTW" in record["signature"] and record["real_time_factor"] > 0
    lines = (synthesizer / "predictions" / "test.txt").read_text().splitlines()
    assert len(lines) == 4 and all(" frames (" in line for line in lines)
    assert len(list((synthesizer / "samples").glob("reference_*.wav"))) == 2
    assert list((synthesizer / "samples").glob("step*_1.wav"))
    assert list((synthesizer / "spectrograms").glob("*.png"))
    assert list((synthesizer / "alignment").glob("*.png"))
    corpus = next(p for p in (synthesizer.parent / "cache").glob("speech-v*") if p.is_dir())
    speakers = (corpus / "speakers.tsv").read_text().splitlines()[1:]
    assert {line.split("\t")[3] for line in speakers} == {"en-us"}  # one voice, every split


@pytest.mark.slow
def test_speak_writes_a_wav_of_the_text(synthesizer, tmp_path):
    ckpt = f"ckpt_path={synthesizer / 'checkpoints' / 'best.ckpt'}"
    result = cli("encdec.speak", ckpt, 'text="Walk  LEFT"', f"out={tmp_path / 'walk.wav'}")
    assert result.returncode == 0, result.stderr
    audio, rate = soundfile.read(tmp_path / "walk.wav")
    assert rate == 16000 and len(audio) > 0
    path, seconds, ending = result.stdout.strip().split("\t")
    assert path == str(tmp_path / "walk.wav") and float(seconds.split()[0]) > 0
    result = cli("encdec.speak", ckpt, "text=[walk left,jump]", f"out={tmp_path / 'many'}")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["0.wav", "1.wav"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [
        ("encdec.speak", ["text='walk ü.'"], "model was not trained on: '.' 'ü'"),
        ("encdec.speak", ["text=' '"], "text 0 is empty"),
        ("encdec.speak", ["text=" + "walk " * 90], "reads at most 400"),
        ("encdec.speak", [], 'give text="..."'),
        ("encdec.transcribe", ["audio=x.wav"], "holds a speech synthesizer: use python -m encdec"),
        ("encdec.caption", ["image=x.png"], "holds a speech synthesizer: use python -m encdec.sp"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line(synthesizer, tmp_path, module, args, expected):
    result = cli(module, f"ckpt_path={synthesizer / 'checkpoints' / 'best.ckpt'}", *args)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_translate_refuses_a_speech_synthesizer(synthesizer):
    checkpoint = synthesizer / "checkpoints" / "best.ckpt"
    result = run_module("encdec.translate", f"ckpt_path={checkpoint}", stdin="a dog\n")
    assert result.returncode != 0
    assert "holds a speech synthesizer: use python -m encdec.speak" in result.stderr


@pytest.mark.slow
def test_a_recognizer_judges_the_synthesized_speech(synthesizer, tmp_path):
    recognizer = tmp_path / "recognizer"
    result = cli(
        "encdec.train", *TINY_RECOGNIZER, "trainer.max_epochs=1", "trainer.max_time=null",
        "logger=csv", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={recognizer}", f"paths.cache_dir={tmp_path / 'cache'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_script(
        "scripts/synthesis_intelligibility.py",
        "--synthesizer", str(synthesizer / "checkpoints" / "best.ckpt"),
        "--recognizer", str(recognizer / "checkpoints" / "best.ckpt"),
        "--limit", "3", "--out", str(tmp_path / "judged"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "judged" / "intelligibility.json").read_text())
    # a test sentence with a character the 12 training sentences lack is left out, and counted
    assert record["utterances"] + record["left_out"] == 3 and record["split"] == "test"
    for name in ("synthesized", "reference", "vocoded_reference"):
        assert set(record[name]) == {"wer", "cer"}
    assert record["mcd_vocoded"] > 0 and record["mcd_predicted"] > 0
    manifest = (tmp_path / "judged" / "synthesized.jsonl").read_text().splitlines()
    assert len(manifest) == record["utterances"] > 0
    assert (tmp_path / "judged" / "synthesized" / "0.wav").is_file()
    assert (tmp_path / "judged" / "vocoded_reference" / "0.wav").is_file()
    assert "CER ratio (synthesized / reference)" in result.stdout


@pytest.mark.slow
def test_a_synthesizer_reading_phonemes_trains_and_speaks(tmp_path):
    run = trained_run(tmp_path, [*TINY_SYNTHESIS, "data/text_frontend=phonemes"])
    checkpoint = read_checkpoint(run / "checkpoints" / "best.ckpt")
    assert checkpoint["data"]["text_frontend"]["_target_"].endswith("EspeakPhonemes")
    vocabulary = Seq2SeqTokenizer.from_dict(checkpoint["tokenizer"]).source.get_vocab()
    assert {"ˈ", "ɛ"} <= set(vocabulary) and "w" in vocabulary  # "walk": wˈɔːk
    ckpt = f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}"
    result = cli("encdec.speak", ckpt, 'text="Walk LEFT"', f"out={tmp_path / 'walk.wav'}")
    assert result.returncode == 0, result.stderr
    assert len(soundfile.read(tmp_path / "walk.wav")[0]) > 0
    result = cli("encdec.speak", ckpt, "text=a big house", f"out={tmp_path / 'h.wav'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "text 0 has phonemes the model was not trained on: 'b' 'h'" in result.stderr
