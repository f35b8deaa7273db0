"""scripts/compare.py and encdec.reports.comparison: tables, plots, W&B groups, significance."""

import json
import math
from pathlib import Path

import pytest
import yaml

from encdec.data.scan import scan_split
from encdec.reports import comparison
from encdec.reports.comparison import (
    markdown_table,
    paired_bootstrap,
    read_run_dir,
    read_wandb_group,
    summarise,
)
from encdec.reports.pooled_rows import pool_rows, pooled_spread, read_report_rows
from encdec.utils.errors import UserError
from tests.conftest import model_config as composed_model
from tests.warm_cli import run_script

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {  # family -> (encoder, decoder) classes
    "rnn": ("encdec.modules.rnn.RNNEncoder", "encdec.modules.rnn.ContextRNNDecoder"),
    "transformer": (
        "encdec.modules.transformer.TransformerEncoder",
        "encdec.modules.transformer.TransformerDecoder",
    ),
}
LABELS = {"rnn": "RNN + ContextRNN", "transformer": "Transformer + Transformer"}


def model_config(family: str, dropout: float = 0.1) -> dict:
    encoder, decoder = NETWORKS[family]
    return {
        "_target_": "encdec.training.seq2seq_module.Seq2SeqModule",
        "net": {
            "_target_": "encdec.networks.encoder_decoder.EncoderDecoder",
            "encoder": {"_target_": encoder},
            "decoder": {"_target_": decoder, "dropout": dropout},
        },
    }


def scan_config(family: str, seed: int, dropout: float = 0.1) -> dict:
    return {
        "seed": seed,
        "init_from": None,
        "monitor": "val/exact_match",
        "decoding": {"beam_size": 1, "seed": seed},  # the sampling seed follows the run's
        "data": {
            "_target_": "encdec.data.scan.ScanDataModule",
            "split": "simple",
            "cache_dir": "unused",
            "seed": seed,
        },
        "model": model_config(family, dropout),
        "paths": {"output_dir": f"/runs/{family}{seed}"},
    }


def fake_run(root: Path, name: str, config: dict, exact_match: float, lines: list[str]) -> Path:
    """A run dir as encdec.train leaves it."""
    run = root / name
    (run / "csv").mkdir(parents=True)
    (run / "predictions").mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    predictions = run / "predictions" / "test.txt"
    predictions.write_text("".join(f"{line}\n" for line in lines))
    metrics = {"test/exact_match": exact_match, "test/bleu": exact_match / 2}
    record = {"metrics": metrics, "predictions": str(predictions), "sentences_per_s": 100.0}
    (run / "test_metrics.json").write_text(json.dumps(record))
    summary = {"parameters": 1000, "fit_wall_seconds": 60.0, "target_tokens_per_s": 5000.0}
    (run / "train_summary.json").write_text(json.dumps({**summary, "peak_rss_mb": 900.0}))
    (run / "csv" / "metrics.csv").write_text(
        "step,val/exact_match,train/loss\n10,,2.0\n10,40.0,\n20,,1.0\n20,60.0,\n"
    )
    return run


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    references = [actions for _, actions in scan_split("simple")["test"]]
    return [
        fake_run(tmp_path, f"{family}{seed}", scan_config(family, seed), score, references)
        for family, seed, score in (
            ("rnn", 1, 50.0),
            ("rnn", 2, 70.0),
            ("transformer", 1, 90.0),
            ("transformer", 2, 92.0),
        )
    ]


def test_seeds_are_aggregated_per_data_and_family(runs):
    rows = summarise([read_run_dir(path) for path in runs])
    assert [(r["data"], r["model"], r["seeds"]) for r in rows] == [
        ("scan/simple", LABELS["rnn"], [1, 2]),
        ("scan/simple", LABELS["transformer"], [1, 2]),
    ]
    assert rows[0]["quality_mean"] == 60.0
    assert rows[0]["quality_std"] == pytest.approx(14.142, abs=1e-3)  # sample std
    assert rows[1]["bleu_mean"] == 45.5
    table = markdown_table(rows)
    assert (
        "| scan/simple | RNN + ContextRNN | 2 | test/exact_match | 60.0 ± 14.1 | 30.0 ± 7.1 |"
        in table
    )


def test_counted_training_flops_get_their_column(runs):
    for run, flops in zip(runs[2:], (3.0e14, 5.0e14), strict=True):
        (run / "train_flops.json").write_text(json.dumps({"train_flops": flops}))
    rows = summarise([read_run_dir(path) for path in runs])
    assert math.isnan(rows[0]["train_flops"]) and rows[1]["train_flops"] == 4.0e14
    rnn, transformer = markdown_table(rows).splitlines()[2:]
    assert rnn.endswith("| — |") and transformer.endswith("| 0.40 |")


def test_runs_with_other_settings_get_their_own_row(tmp_path, runs):
    other = fake_run(tmp_path, "rnn_d3", scan_config("rnn", 3, dropout=0.3), 80.0, ["x"])
    rows = summarise([read_run_dir(path) for path in [*runs, other]])
    assert [r["model"] for r in rows] == [
        "RNN + ContextRNN (dropout=0.1)",
        "RNN + ContextRNN (dropout=0.3)",
        "Transformer + Transformer",
    ]


def test_a_callback_that_changes_training_labels_its_runs(tmp_path, runs):
    config = scan_config("rnn", 3)
    config["callbacks"] = {
        "ema": {"_target_": "encdec.callbacks.moving_average.ExponentialMovingAverage"},
        "sample_table": {"_target_": "encdec.callbacks.samples.ValidationSamples"},
    }
    averaged = fake_run(tmp_path, "rnn3_ema", config, 80.0, ["x"])
    rows = summarise([read_run_dir(path) for path in [*runs, averaged]])
    assert [(r["model"], r["seeds"]) for r in rows] == [
        (LABELS["rnn"], [1, 2]),
        (LABELS["rnn"] + " (+ema)", [3]),
        (LABELS["transformer"], [1, 2]),
    ]


def test_runs_that_differ_only_in_loggers_and_newer_settings_share_a_row(tmp_path, runs):
    config = scan_config("rnn", 3)
    config["logger"] = {"wandb": {"_target_": "lightning.pytorch.loggers.WandbLogger"}}
    config["trainer"] = {"enable_progress_bar": False}
    config["report_metric"] = "val/exact_match"  # a setting the older runs' configs lack
    config["callbacks"] = {  # a logging callback the older runs did not have
        "synthesis_samples": {"_target_": "encdec.callbacks.synthesis_samples.SynthesisSamples"}
    }
    logged = fake_run(tmp_path, "rnn3_wandb", config, 80.0, ["x"])
    rows = summarise([read_run_dir(path) for path in [*runs, logged]])
    assert [(r["model"], r["seeds"]) for r in rows] == [
        (LABELS["rnn"], [1, 2, 3]),
        (LABELS["transformer"], [1, 2]),
    ]


def test_a_fine_tuned_run_is_labelled_by_the_run_it_started_from(tmp_path, runs):
    config = scan_config("rnn", 3)
    config["init_from"] = "outputs/pretrain/runs/2026-12-07_span/checkpoints/best.ckpt"
    tuned = fake_run(tmp_path, "rnn3_tuned", config, 80.0, ["x"])
    rows = summarise([read_run_dir(path) for path in [*runs, tuned]])
    assert [r["model"] for r in rows][:2] == [
        "RNN + ContextRNN (init_from=2026-12-07_span)",
        "RNN + ContextRNN (init_from=None)",
    ]


def test_a_run_without_test_metrics_is_named(tmp_path, runs):
    (runs[0] / "test_metrics.json").unlink()
    with pytest.raises(UserError, match=r"rnn1: no test_metrics.json"):
        read_run_dir(runs[0])
    with pytest.raises(UserError, match="no config.yaml"):
        read_run_dir(tmp_path)


def test_compare_cli_writes_table_csv_and_plots(tmp_path, runs):
    out = tmp_path / "report"
    result = run_script("scripts/compare.py", *map(str, runs), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "| scan/simple | Transformer + Transformer | 2 |" in result.stdout
    assert (out / "comparison.md").read_text() in result.stdout
    assert "quality_mean" in (out / "comparison.csv").read_text().splitlines()[0]
    for plot in ("quality_vs_params", "quality_vs_time", "val_curves"):
        assert (out / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
    (runs[0] / "test_metrics.json").unlink()  # a job that failed
    refused = run_script("scripts/compare.py", *map(str, runs))
    assert refused.returncode == 2 and "rnn1: no test_metrics.json" in refused.stderr
    skipped = run_script("scripts/compare.py", *map(str, runs), "--skip-unfinished")
    assert skipped.returncode == 0 and "skipped:" in skipped.stderr
    assert "| scan/simple | RNN + ContextRNN | 1 |" in skipped.stdout


def test_paired_bootstrap_finds_a_real_difference(tmp_path, runs):
    perfect = read_run_dir(runs[2])  # predictions == references
    broken = read_run_dir(runs[0])
    lines = broken.predictions.read_text().splitlines()
    broken.predictions.write_text("".join(f"{' '.join(line.split()[:2])}\n" for line in lines))
    report = paired_bootstrap(broken, perfect, samples=200)
    assert "BLEU: baseline" in report and "system 100.00" in report
    assert "significant at 0.05" in report and "not significant" not in report
    same = paired_bootstrap(perfect, read_run_dir(runs[3]), samples=200)
    assert same.endswith("have identical test outputs: no difference")


def test_wandb_group_is_read_through_the_api(monkeypatch):
    class FakeRun:
        def __init__(self, family: str, seed: int, score: float) -> None:
            self.name = f"{family}-{seed}"
            self.config = {**scan_config(family, seed), "parameters": {"total": 1234}}
            self.summary = {"test/exact_match": score, "_runtime": 61.0}

        def history(self, keys: list[str], pandas: bool) -> list[dict]:
            return [{"trainer/global_step": 10, "val/exact_match": 40.0}]

    class FakeApi:
        def runs(self, path: str, filters: dict) -> list[FakeRun]:
            assert (path, filters) == ("me/encdec", {"group": "compare_scan"})
            return [FakeRun("rnn", 1, 50.0), FakeRun("rnn", 2, 60.0)]

    import wandb

    monkeypatch.setattr(wandb, "Api", FakeApi)
    runs = read_wandb_group("compare_scan", "encdec", "me")
    rows = summarise(runs)
    assert rows[0]["quality_mean"] == 55.0 and rows[0]["parameters"] == 1234
    assert runs[0].val_curve == [(10, 40.0)]
    monkeypatch.setattr(FakeApi, "runs", lambda self, path, filters: [])
    with pytest.raises(UserError, match="has no finished runs"):
        read_wandb_group("compare_scan", "encdec", "me")


def test_family_and_data_labels():
    assert comparison.family_of({"model": model_config("transformer")}) == LABELS["transformer"]
    old = {"model": {"_target_": "encdec.models.rnn.RNNSeq2Seq"}}  # a run dir from encdec 0.1
    assert comparison.family_of(old) == "RNNSeq2Seq"
    paradigms = {  # every paradigm gets its own name
        "prefix_lm": "EmbeddedSource + DecoderOnlyTransformer",
        "encoder_ctc": "Upsampled + CTC",
        "speech_ctc": "Transformer + CTC",
        "t5": "T5",
        "gpt2": "GPT2",
        "masked_lm": "MaskedLanguageModel",
    }
    for option, family in paradigms.items():
        data = ("data=speech_commands",) if option.startswith("speech") else ()
        composed = composed_model((f"model={option}", *data))
        assert comparison.family_of({"model": composed}) == family
    config = {"data": {"_target_": "encdec.data.translation.TranslationDataModule"}}
    config["data"]["path"] = "../shared/data/multi30k"
    assert comparison.data_of(config) == "multi30k"


def translation_run(root: Path, name: str, corpus: Path, test_sources: list[str]) -> Path:
    """A finished run on the parallel text in ``corpus`` (test: German sources, English
    references), whose test output is the reference."""
    corpus.mkdir(parents=True)
    (corpus / "test.de").write_text("".join(f"{line}\n" for line in test_sources))
    references = [f"sentence {i}" for i in range(len(test_sources))]
    (corpus / "test.en").write_text("".join(f"{line}\n" for line in references))
    config = {
        **scan_config("rnn", 1),
        "monitor": "val/bleu",
        "data": {
            "_target_": "encdec.data.translation.TranslationDataModule",
            "path": str(corpus),
            "source_lang": "de",
            "target_lang": "en",
            "cache_dir": str(root / "cache"),
        },
    }
    run = fake_run(root, name, config, 50.0, references)
    (run / "test_metrics.json").write_text(
        json.dumps({"metrics": {"test/bleu": 50.0}, "predictions": str(run / "x" / "test.txt")})
    )  # logged where the run was made: found again in the run dir's predictions/
    return run


def test_significance_refuses_outputs_of_different_sources(tmp_path):
    sources = [f"satz {i}" for i in range(5)]
    baseline = translation_run(tmp_path, "a", tmp_path / "one" / "multi30k", sources)
    same = translation_run(tmp_path, "b", tmp_path / "two" / "multi30k", sources)
    other = translation_run(
        tmp_path, "c", tmp_path / "three" / "multi30k", [*sources[:3], "anders", sources[4]]
    )
    runs = [read_run_dir(path) for path in (baseline, same, other)]
    assert runs[0].data == runs[2].data == "multi30k"  # the same label, not the same test set
    assert runs[0].predictions == baseline / "predictions" / "test.txt"
    assert paired_bootstrap(runs[0], runs[1], samples=10).endswith("no difference")
    with pytest.raises(UserError, match=r"different sources \(line 4: 'satz 3' in .*a, 'anders'"):
        paired_bootstrap(runs[0], runs[2], samples=10)
    refused = run_script("scripts/compare.py", str(baseline), str(other), "--significance")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "cannot be paired" in refused.stderr


def test_a_report_pooled_with_later_seeds_equals_the_report_of_all_runs(tmp_path, runs):
    first_sitting = tmp_path / "report"
    made = run_script("scripts/compare.py", str(runs[0]), str(runs[2]), "--out", str(first_sitting))
    assert made.returncode == 0, made.stderr
    pooled = run_script(
        "scripts/compare.py",
        str(runs[1]),
        str(runs[3]),
        "--with-report",
        str(first_sitting),
        "--out",
        str(tmp_path / "pooled"),
    )
    assert pooled.returncode == 0, pooled.stderr
    assert "no plots" in pooled.stdout and not list((tmp_path / "pooled").glob("*.png"))
    every_run = summarise([read_run_dir(path) for path in runs])
    rows = read_report_rows(tmp_path / "pooled")
    assert [(r["model"], r["runs"], r["seeds"]) for r in rows] == [
        (LABELS["rnn"], 2, [1, 2]),
        (LABELS["transformer"], 2, [1, 2]),
    ]
    for row, expected in zip(rows, every_run, strict=True):
        for column in ("quality_mean", "quality_std", "bleu_mean", "bleu_std", "parameters"):
            assert row[column] == pytest.approx(expected[column]), column
    assert (tmp_path / "pooled" / "comparison.md").read_text() == markdown_table(every_run)


def test_pooling_refuses_a_seed_twice_and_a_missing_report(tmp_path, runs):
    rows = summarise([read_run_dir(path) for path in runs])
    with pytest.raises(UserError, match=r"RNN \+ ContextRNN: seed \[1, 2\] is in the report"):
        pool_rows(rows, rows[:1])
    missing = run_script("scripts/compare.py", str(runs[0]), "--with-report", str(tmp_path))
    assert missing.returncode == 2 and "no comparison.csv" in missing.stderr
    (tmp_path / "comparison.csv").write_text("data,model\nscan/simple,x\n")
    with pytest.raises(UserError, match=r"comparison.csv:2: not a comparison row"):
        read_report_rows(tmp_path)


def test_pooled_spread_equals_the_spread_of_all_values():
    values = [3.0, 5.5, 4.0, 9.0, 1.5]
    first, second = values[:2], values[2:]
    groups = [(len(g), *comparison.mean_std(g)) for g in (first, second)]
    assert pooled_spread(*groups) == pytest.approx(comparison.mean_std(values))
    assert pooled_spread((1, 2.0, 0.0), (1, 4.0, 0.0)) == pytest.approx((3.0, math.sqrt(2)))
