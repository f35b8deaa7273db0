"""DDP from the command line: a multirun of DDP jobs, and DDP jobs whose ranks die.

Never ``strategy=ddp`` inside the pytest process (its children would re-run pytest): every run
here is the CLI in a subprocess, with a timeout.
"""

import csv
import json
import os
import pickle
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from encdec.launch.distributed import config_differences
from encdec.utils.loggers import CSVLogger
from tests.warm_cli import run_module

ROOT = Path(__file__).resolve().parents[1]
TINY_DDP = [
    "trainer=ddp_sim",
    "trainer.strategy=ddp",  # Lightning's subprocess launcher: children re-run the command
    "model=scan_transformer",
    "model.net.embedding_dim=32",
    "model.net.encoder.dim=32",
    "model.net.decoder.dim=32",
    "model.net.encoder.ff_dim=64",
    "model.net.decoder.ff_dim=64",
    "logger=csv",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def run_cli(*args: str, root: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return run_module(
        "encdec.train", *args, f"paths.root_dir={root}", cwd=ROOT, env=env, timeout=timeout
    )


def test_config_differences_names_dotted_keys():
    mine = {"seed": 1, "model": {"dropout": 0.1, "d_model": 32}, "tags": ["a"]}
    theirs = {"seed": 1, "model": {"dropout": 0.3, "d_model": 32}, "tags": ["b"], "extra": 1}
    assert config_differences(mine, theirs) == ["extra", "model.dropout", "tags"]
    assert config_differences(mine, mine) == []


def test_csv_logger_copies_in_two_processes_append_to_one_file(tmp_path):
    """As ``ddp_spawn`` does: the main process's logger (hyperparameters logged, so its writer
    exists) is copied into the fit stage's process, then a fresh copy into the test stage's."""
    logger = CSVLogger(tmp_path, name="csv", version="")
    logger.log_hyperparams({"seed": 1})
    in_main = pickle.dumps(logger)
    fit, test = pickle.loads(in_main), pickle.loads(in_main)
    fit.log_metrics({"train/loss": 2.0}, step=0)
    fit.log_metrics({"val/loss": 1.5, "val/bleu": 3.0}, step=2)
    fit.save()
    test.log_metrics({"test/bleu": 4.0}, step=2)
    test.save()
    with (tmp_path / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [{k: v for k, v in row.items() if v} for row in rows] == [
        {"step": "0", "train/loss": "2.0"},
        {"step": "2", "val/bleu": "3.0", "val/loss": "1.5"},
        {"step": "2", "test/bleu": "4.0"},
    ]


@pytest.mark.slow
def test_ddp_sim_as_the_readme_gives_it_trains_tests_and_logs_every_stage(tmp_path):
    """``trainer=ddp_sim`` is ``ddp_spawn``: fit and test each run in newly spawned processes,
    and both stages' rows must land in the one ``metrics.csv`` (the test stage used to fail
    rewriting the header of the file the fit stage wrote). Default loggers (W&B offline + CSV)."""
    run_dir = tmp_path / "run"
    result = run_cli(
        "trainer=ddp_sim",
        "model=attention",
        "model.net.embedding_dim=16",
        "model.net.encoder.hidden_size=32",
        "model.net.decoder.hidden_size=32",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        f"hydra.run.dir={run_dir}",
        root=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (run_dir / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert {"val/loss", "val/bleu", "val/exact_match", "test/bleu"} <= set(rows[0])
    assert any(row["val/exact_match"] for row in rows)  # the fit stage's validation
    assert any(row["test/exact_match"] for row in rows)
    assert (run_dir / "test_metrics.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_ddp_multirun_gives_one_run_dir_per_job_with_its_own_values(tmp_path, launcher):
    """Each job's two ranks train that job's dropout (the ranks compare their configs and
    would stop otherwise), and each job writes exactly its own run dir: under Hydra's basic
    launcher (the jobs one after another in this process) and submitit's local one (each job
    in a process of its own, inside submitit's main module). Each job's train summary counts
    the target tokens of both ranks."""
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        f"hydra/launcher={launcher}",
        *TINY_DDP,
        "callbacks=none",
        "+callbacks.throughput._target_=encdec.callbacks.throughput.ThroughputMonitor",
        "+callbacks.count._target_=tests.token_counts.CountTargetTokens",
        "model.net.decoder.dropout=0.0,0.3",
        f"hydra.sweep.dir={sweep}",
        root=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name != ".submitit") == [
        "0",
        "1",
    ]
    for job, dropout in (("0", 0.0), ("1", 0.3)):
        config = yaml.safe_load((sweep / job / "config.yaml").read_text())
        assert config["model"]["net"]["decoder"]["dropout"] == dropout
        assert (sweep / job / "test_metrics.json").is_file()
        hparams = yaml.safe_load((sweep / job / "csv" / "hparams.yaml").read_text())
        assert hparams["global_batch_tokens"] == 2 * config["data"]["max_tokens"]  # per device
        summary = json.loads((sweep / job / "train_summary.json").read_text())
        per_rank = [
            json.loads((sweep / job / f"target_tokens_rank{rank}.json").read_text())
            for rank in (0, 1)
        ]
        assert summary["world_size"] == 2 and min(per_rank) > 0
        assert summary["target_tokens"] == sum(per_rank)
    assert not (tmp_path / "outputs").exists()  # no stray single-run dirs from the children


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_ddp_job_whose_worker_dies_exits_nonzero_promptly(tmp_path, strategy):
    start = time.monotonic()
    result = run_cli(
        *TINY_DDP,
        f"trainer.strategy={strategy}",
        "trainer.limit_train_batches=20",
        "+callbacks.crash._target_=tests.crash.KillAt",
        "+callbacks.crash.step=2",
        "+callbacks.crash.rank=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        root=tmp_path,
        timeout=180,
    )
    assert result.returncode != 0
    assert time.monotonic() - start < 120
    assert not (tmp_path / "run" / "test_metrics.json").exists()


@pytest.mark.slow
def test_ddp_child_exits_when_the_main_process_dies(tmp_path):
    """Rank 0 (the main process) is killed: rank 1 must not wait in a collective until the
    process group times out (30 minutes). (Gloo sees the closed connection and fails.)"""
    run_dir = tmp_path / "run"
    result = run_cli(
        *TINY_DDP,
        "trainer.limit_train_batches=20",
        "+callbacks.crash._target_=tests.crash.KillAt",
        "+callbacks.crash.step=2",
        "+callbacks.crash.rank=0",
        f"hydra.run.dir={run_dir}",
        root=tmp_path,
        timeout=180,
    )
    assert result.returncode != 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        survivors = subprocess.run(
            ["pgrep", "-f", str(run_dir)], capture_output=True, text=True
        ).stdout.split()
        if not survivors:
            break
        time.sleep(1)
    assert not survivors, f"rank 1 still running: pids {survivors}"
