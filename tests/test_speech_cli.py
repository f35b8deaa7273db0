"""Speech recognition the way a user runs it: train on the synthesized corpus through the CLI,
evaluate on the held-out engine, transcribe files of any rate and channel count and a
manifest, and the console's one-line errors."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from omegaconf import OmegaConf

from tests.warm_cli import run_module, run_script

ROOT = Path(__file__).resolve().parents[1]
TINY_RECOGNIZER = [  # a tiny corpus and model of the default experiment
    "experiment=speech_commands",
    "data.source.texts.counts={train:40,val:8,test:8}",
    "data.source.speakers={train:4,val:1,test:1,test_unseen_engine:1}",
    "data.source.utterances_per_speaker=4",
    "model.net.embedding_dim=32",
    "model.net.frontend.output_size=32",
    "model.net.frontend.channels=8",
    "model.net.encoder.dim=32",
    "model.net.encoder.ff_dim=64",
    "model.net.encoder.num_layers=1",
    "model.net.decoder.dim=32",
    "model.net.decoder.ff_dim=64",
    "model.net.decoder.num_layers=1",
]
TINY_SPEECH = [
    *TINY_RECOGNIZER,
    "model/language_model=ngram",  # estimated on the training transcripts, kept in checkpoints
    "decoding.beam_size=2",
    "trainer.max_epochs=2",
    "trainer.max_time=null",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PROJECT_ROOT": str(ROOT)}
    return run_module(module, *args, cwd=ROOT, env=env)


def trained_run(base: Path, overrides: list[str]) -> Path:
    """``encdec.train`` with ``overrides`` into ``base/run`` (its corpus cached in
    ``base/cache``): the run dir."""
    result = cli(
        "encdec.train", *overrides, f"hydra.run.dir={base / 'run'}",
        f"paths.cache_dir={base / 'cache'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "run"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny recognizer trained for two epochs by ``encdec.train``: its run dir."""
    return trained_run(tmp_path_factory.mktemp("speech"), TINY_SPEECH)


@pytest.mark.slow
def test_training_selects_on_val_wer_and_reports_wer_cer_and_real_time_factor(trained):
    config = OmegaConf.load(trained / "config.yaml")
    assert config.monitor == "val/wer" and config.callbacks.model_checkpoint.mode == "min"
    record = json.loads((trained / "test_metrics_beam2_ctc0.3_lm0.45.json").read_text())
    assert {"test/wer_beam2_ctc0.3_lm0.45", "test/cer_beam2_ctc0.3_lm0.45"} <= set(
        record["metrics"]
    )
    assert record["real_time_factor"] > 0 and "normalized text" in record["signature"]
    assert list((trained / "samples" / "audio").glob("*.wav"))  # the val samples' audio
    assert list((trained / "attention").glob("*.png"))  # attention over the spectrogram
    lines = (trained / "predictions" / "test_beam2_ctc0.3_lm0.45.txt").read_text().splitlines()
    assert len(lines) == 4  # the test speaker's utterances


@pytest.mark.slow
def test_evaluate_tests_on_the_held_out_engine(trained, tmp_path):
    result = cli(
        "encdec.evaluate", f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}",
        "test_split=test_unseen_engine", "decoding.ctc_weight=1.0", "decoding.beam_size=1",
        "decoding.lm_weight=0",  # CTC's best path alone (the experiment fuses its n-gram model)
        "logger=csv", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "test_metrics_ctc1.json").read_text())
    assert "test/wer_ctc1" in record["metrics"]
    corpus = next(p for p in (trained.parent / "cache").glob("speech-v*") if p.is_dir())
    flite = (corpus / "test_unseen_engine.jsonl").read_text().splitlines()
    assert len((tmp_path / "predictions" / "test_ctc1.txt").read_text().splitlines()) == len(flite)
    fused = cli(  # with a language model counted anew, of another order than the checkpoint's
        "encdec.evaluate", f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}",
        "decoding.ctc_weight=0.3", "decoding.lm_weight=0.3", "logger=csv",
        "model/language_model=ngram", "model.language_model.order=3",
        "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'fused'}",
    )  # fmt: skip
    assert fused.returncode == 0, fused.stderr[-3000:]
    assert "language model: 3-gram counted on 16 training targets" in fused.stdout
    record = json.loads((tmp_path / "fused" / "test_metrics_beam2_ctc0.3_lm0.3.json").read_text())
    assert "test/wer_beam2_ctc0.3_lm0.3" in record["metrics"]


@pytest.mark.slow
def test_transcribe_reads_any_rate_and_channels_and_scores_a_manifest(trained, tmp_path):
    corpus = next(p for p in (trained.parent / "cache").glob("speech-v*") if p.is_dir())
    row = json.loads((corpus / "test.jsonl").read_text().splitlines()[0])
    audio, rate = soundfile.read(corpus / row["audio_filepath"], dtype="float32")
    soundfile.write(tmp_path / "stereo.flac", np.stack([audio, audio], 1), rate)
    soundfile.write(tmp_path / "mono.wav", audio, rate)
    ckpt = f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}"
    result = cli(
        "encdec.transcribe", ckpt, f"audio=[{tmp_path / 'mono.wav'},{tmp_path / 'stereo.flac'}]"
    )
    assert result.returncode == 0, result.stderr
    mono, stereo = result.stdout.splitlines()
    assert mono == stereo  # the same speech, read as mono
    result = cli("encdec.transcribe", ckpt, f"manifest={corpus / 'test.jsonl'}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 + 2 and lines[-2].startswith("WER ") and "CER" in lines[-2]
    assert lines[-1].startswith("real-time factor ")
    fused = cli(
        "encdec.transcribe", ckpt, f"audio={tmp_path / 'mono.wav'}", "decoding.lm_weight=0.5"
    )
    assert fused.returncode == 0 and len(fused.stdout.splitlines()) == 1, fused.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [
        ("encdec.transcribe", ["audio={tmp}/text.wav"], "error: {tmp}/text.wav: unreadable audio"),
        ("encdec.transcribe", [], "error: give audio=FILE (or audio=[FILE,...]) or manifest="),
        ("encdec.caption", ["image=x.png"], "holds a speech recognizer: use python -m encdec.tr"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line(trained, tmp_path, module, args, expected):
    (tmp_path / "text.wav").write_text("not audio")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = cli(module, f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}", *args)
    assert result.returncode != 0
    assert expected.replace("{tmp}", str(tmp_path)) in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_translate_refuses_a_speech_recognizer(trained):
    checkpoint = trained / "checkpoints" / "best.ckpt"
    result = run_module("encdec.translate", f"ckpt_path={checkpoint}", stdin="a dog\n")
    assert result.returncode != 0
    assert "holds a speech recognizer: use python -m encdec.transcribe" in result.stderr


@pytest.mark.slow
def test_compare_reports_a_speech_run_by_its_wer(trained, tmp_path):
    result = run_script("scripts/compare.py", str(trained), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    row = next(
        line for line in result.stdout.splitlines() if "Conformer + Transformer" in line
    )  # the default job's encoder and decoder
    assert "test/wer_beam2_ctc0.3_lm0.45" in row
    assert (tmp_path / "val_curves.png").is_file()  # the val WER curve
