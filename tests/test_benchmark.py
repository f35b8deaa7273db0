"""scripts/benchmark.py end to end on a tiny corpus and a tiny Transformer: every measurement is
there and consistent, and the table is written."""

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from encdec.launch.precision import cpu_has_native_bf16
from encdec.train import train
from tests.conftest import FAST, TRANSFORMER_SIZES, both_parts, compose_config

ROOT = Path(__file__).resolve().parents[1]
WORDS = {"eins": "one", "zwei": "two", "drei": "three", "vier": "four", "fünf": "five"}
TINY = [
    *TRANSFORMER_SIZES,
    *both_parts("num_heads=2", "num_layers=1"),
    "data.tokenizer.vocab_size=300",
]


def write_corpus(directory: Path) -> None:
    """A Multi30k-shaped de/en corpus: numbers words translated one by one."""
    generator = random.Random(0)
    directory.mkdir()
    for split, size in (("train", 200), ("val", 20), ("test_2016_flickr", 20)):
        sources = [generator.choices(list(WORDS), k=generator.randint(2, 8)) for _ in range(size)]
        (directory / f"{split}.de").write_text("".join(" ".join(s) + "\n" for s in sources))
        targets = ["Number " + " ".join(WORDS[w] for w in s) + ".\n" for s in sources]
        (directory / f"{split}.en").write_text("".join(targets))


@pytest.mark.slow
def test_benchmark_measures_training_and_decoding(tmp_path):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    data = [f"data.path={corpus}", f"paths.cache_dir={tmp_path / 'cache'}"]
    cfg = compose_config(
        "train",
        [
            "experiment=multi30k_transformer",
            *data,
            *TINY,
            *(o if o != "callbacks=none" else "callbacks=default" for o in FAST),  # checkpoints
            "test=false",
        ],
        tmp_path / "train",
    )
    cfg.paths.cache_dir = str(tmp_path / "cache")
    train(cfg)
    checkpoint = tmp_path / "train" / "checkpoints" / "last.ckpt"
    output = tmp_path / "benchmark"
    command = [
        sys.executable,
        str(ROOT / "scripts" / "benchmark.py"),
        f"--data-path={corpus}",
        "--families=transformer",
        f"--ckpt=transformer={checkpoint}",
        "--precision=32-true",
        # bf16 where this CPU has it (emulated bf16 decodes many times slower than fp32)
        f"--decode-precision={'bf16-mixed' if cpu_has_native_bf16() else '32-true'}",
        "--decode-batch-size=8",
        "--warmup=1",
        "--steps=2",
        "--profile-steps=2",
        "--max-tokens=256",
        f"--output={output}",
        "--override",
        *TINY,
        data[1],
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]

    report = json.loads((output / "benchmark.json").read_text())
    assert report["command"].startswith("python scripts/benchmark.py")
    (measured,) = report["results"]
    assert measured["family"] == "transformer" and measured["timed_steps"] == 2
    assert measured["target_tokens_per_s"] > 0
    assert measured["tokens_per_s"] > measured["target_tokens_per_s"]
    assert 0 <= measured["padding_fraction"] < 1
    assert measured["flops_per_s"] == pytest.approx(
        measured["flops_per_step"] * 2 / measured["train_seconds"]
    )
    # the bf16 peak is measured too where the CPU has bf16; a tiny model is far below either peak
    assert 0 < measured["mfu_fp32"] < 1
    assert 0 < measured["mfu_bf16"] < 1 if cpu_has_native_bf16() else measured["mfu_bf16"] is None
    assert measured["peak_rss_mib"] > 100
    assert measured["test_sentences"] == 20
    decode_precision = "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    assert (measured["decode_precision"], measured["decode_batch_size"]) == (decode_precision, 8)
    for search in ("greedy", "beam5"):
        assert 0 <= measured[f"{search}_bleu"] <= 100
        assert measured[f"{search}_sentences_per_s"] > 0
        assert measured[f"{search}_process_seconds"] > measured[f"{search}_seconds"]
    assert measured["profile_steps"] == 2 and measured["profile_aten_ops_per_step"] > 100
    assert measured["profile_wall_ms_per_step"] > 0
    assert measured["profile_device_busy_fraction"] is None  # no GPU: the host is the device
    assert "Self CPU" in (output / "transformer-profile.txt").read_text()
    table = (output / "benchmark.md").read_text()
    assert "| transformer | " in table and "MFU bf16" in table
    assert "- transformer: 2 steps under torch.profiler" in table


def test_timed_batches_count_across_epochs():
    """The timed window starts once, after ``warmup`` batches in all, and keeps every later
    batch, although ``batch_idx`` restarts at each epoch."""
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    timer = benchmark.TimedBatches(warmup=2, steps=3)
    module = SimpleNamespace(device=torch.device("cpu"))
    batch = {key: torch.zeros(1) for key in ("source", "source_mask", "target_in", "target_out")}
    starts = []
    for epoch_size in (3, 3):  # two epochs of three batches
        for batch_idx in range(epoch_size):
            timer.on_train_batch_start(None, module, batch, batch_idx)
            timer.on_train_batch_end(None, module, None, batch, batch_idx)
            starts.append(timer.start)
    assert starts[:2] == [0.0, 0.0] and starts[2] > 0
    assert len(set(starts[2:])) == 1  # not restarted in the second epoch
    assert len(timer.batches) == 3 and timer.seconds > 0  # the sixth batch is not timed


def test_memory_benchmark_samples_the_run_and_writes_a_table(tmp_path):
    out = tmp_path / "memory"
    command = [
        sys.executable,
        "scripts/memory_benchmark.py",
        "--minutes",
        "0.2",
        "--interval",
        "2",
        "--reference-minute",
        "0.05",
        "--output",
        str(out),
        "--",
        "model=transformer",  # SCAN, generated: the default data
        *TINY,
        "data.tokenizer.vocab_size=100",
        "logger=csv",
        "callbacks=none",
        "trainer.max_epochs=100",
        "trainer.enable_progress_bar=false",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((out / "memory.json").read_text())
    assert "trainer.max_time=00:00:00:12" in record["command"] and "test=false" in record["command"]
    rss = [sample["rss_mb"] for sample in record["samples"]]
    assert len(rss) >= 3 and all(100 < value < 10_000 for value in rss)  # a Python + torch process
    table = (out / "memory.md").read_text().splitlines()
    assert table[0] == "| minute | RSS (MB) | vs minute 0.05 |" and len(table) == 2 + len(rss)


def test_make_large_corpus_repeats_training_and_copies_evaluation(tmp_path):
    write_corpus(tmp_path / "small")
    out = tmp_path / "large"
    script = [sys.executable, "scripts/make_large_corpus.py", str(tmp_path / "small"), str(out)]
    result = subprocess.run([*script, "--repeat", "3"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "600 training pairs (3 x 200)" in result.stdout
    for lang in ("de", "en"):
        small = (tmp_path / "small" / f"train.{lang}").read_text()
        assert (out / f"train.{lang}").read_text() == small * 3
        assert (out / f"test_2016_flickr.{lang}").read_bytes() == (
            tmp_path / "small" / f"test_2016_flickr.{lang}"
        ).read_bytes()
    refused = subprocess.run([*script, "--repeat", "0"], capture_output=True, text=True, cwd=ROOT)
    assert (
        refused.returncode == 2 and refused.stderr.strip() == "error: --repeat must be >= 1, got 0"
    )
