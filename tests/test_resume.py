"""Exact resume: a run killed with SIGKILL (mid-epoch, during validation, right after an
end-of-epoch checkpoint) and resumed with ``resume=auto`` each time ends bit for bit where
the uninterrupted run ends. Checkpoint writes are atomic; bad resume checkpoints are refused."""

import json
import os
from pathlib import Path

import pytest
import torch

from encdec.launch.resuming import resume_checkpoint
from encdec.training.checkpointing import (
    AtomicCheckpointIO,
    check_resumable,
    keep_wandb_run_id,
)
from encdec.utils.errors import UserError
from tests.conftest import TINY_MODELS, model_checkpoint
from tests.test_entry_points import TINY_TRAIN
from tests.warm_cli import run_module

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 8


def train_cli(run_dir: Path, cache: Path, *extra: str) -> int:
    overrides = [
        *TINY_TRAIN["transformer"],
        "seed=7",
        "model.net.decoder.dropout=0.3",  # dropout draws from the RNG: its state is restored too
        "trainer.max_epochs=3",
        f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
        "trainer.limit_val_batches=2",
        "callbacks.last_checkpoint.every_n_train_steps=2",
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={run_dir}",
        "resume=auto",
        *extra,
    ]
    env = {**os.environ, "ENCDEC_TCMALLOC": "0"}
    result = run_module("encdec.train", *overrides, cwd=ROOT, env=env)
    assert result.returncode in (0, -9), result.stderr[-3000:]
    return result.returncode


def kill_at(step: int, during: str = "train") -> list[str]:
    return [
        "+callbacks.crash._target_=tests.crash.KillAt",
        f"+callbacks.crash.step={step}",
        f"+callbacks.crash.during={during}",
    ]


def last_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]


def outcome(run_dir: Path) -> tuple[dict, dict, dict, str]:
    checkpoints = run_dir / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)["state_dict"]
    best = torch.load(checkpoints / "best.ckpt", weights_only=True)["state_dict"]
    metrics = json.loads((run_dir / "test_metrics.json").read_text())["metrics"]
    return last, best, metrics, (run_dir / "predictions" / "test.txt").read_text()


@pytest.mark.slow
def test_killed_and_resumed_run_ends_bit_for_bit_like_the_uninterrupted_one(tmp_path):
    cache = tmp_path / "cache"
    assert train_cli(tmp_path / "whole", cache) == 0

    run = tmp_path / "killed"
    assert train_cli(run, cache, *kill_at(5)) == -9  # mid-epoch 0
    assert last_step(run) == 4  # a step checkpoint
    assert train_cli(run, cache, *kill_at(2 * STEPS_PER_EPOCH, "validation")) == -9
    assert last_step(run) == 14  # no step checkpoint at an epoch's last batch
    assert train_cli(run, cache, *kill_at(17)) == -9  # right after epoch 1's validation
    assert last_step(run) == 16  # the end-of-epoch checkpoint
    assert train_cli(run, cache, *kill_at(21)) == -9  # mid-epoch 2
    assert last_step(run) == 20
    assert train_cli(run, cache) == 0

    whole_last, whole_best, whole_metrics, whole_predictions = outcome(tmp_path / "whole")
    last, best, metrics, predictions = outcome(run)
    assert last_step(run) == last_step(tmp_path / "whole") == 3 * STEPS_PER_EPOCH
    for expected, actual in ((whole_last, last), (whole_best, best)):
        assert expected.keys() == actual.keys()
        for name, tensor in expected.items():
            assert torch.equal(actual[name], tensor), name
    assert metrics == whole_metrics
    assert predictions == whole_predictions


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def torn_save(obj, file):  # dies halfway through writing
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_resume_auto_finds_last_checkpoint_or_starts_fresh(tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"resume": "auto", "ckpt_path": None})
    assert resume_checkpoint(cfg, tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert resume_checkpoint(cfg, tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")
    cfg.ckpt_path = "other.ckpt"  # an explicit checkpoint wins
    assert resume_checkpoint(cfg, tmp_path) == "other.ckpt"
    assert resume_checkpoint(OmegaConf.create({"resume": None}), tmp_path) is None
    with pytest.raises(UserError, match="resume='yes'"):
        resume_checkpoint(OmegaConf.create({"resume": "yes"}), tmp_path)


def save_trained_checkpoint(model, path: Path, **changes) -> None:
    torch.save(model_checkpoint(model, **changes), path)


def test_resume_refuses_checkpoints_it_cannot_continue(tmp_path):
    model = TINY_MODELS["transformer-prenorm"]()
    good = tmp_path / "good.ckpt"
    save_trained_checkpoint(model, good)
    check_resumable(str(good), model)

    rnn = TINY_MODELS["rnn-gru"]()
    cases = {
        r"holds another network \(model.net.decoder._target_=": {"encdec_model": rnn.model_config},
        "has no training state": {"optimizer_states": None},
        "source_vocab_size=99": {
            "vocab_sizes": {**model.net.vocab_sizes(), "source_vocab_size": 99}
        },
        "newer encdec": {"encdec_format": 99},
        "checkpoint format 1 of an older encdec": {"encdec_format": 1},
        "not an encdec model checkpoint": {"encdec_model": None},
    }
    for message, changes in cases.items():
        path = tmp_path / "bad.ckpt"
        save_trained_checkpoint(model, path, **changes)
        with pytest.raises(UserError, match=message):
            check_resumable(str(path), model)
    (tmp_path / "torn.ckpt").write_bytes(b"PK\x03\x04 half")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        check_resumable(str(tmp_path / "torn.ckpt"), model)


def test_wandb_run_id_is_kept_in_the_run_dir(tmp_path):
    from omegaconf import OmegaConf

    first = OmegaConf.create({"logger": {"wandb": {"id": None}}})
    keep_wandb_run_id(first, tmp_path)
    again = OmegaConf.create({"logger": {"wandb": {"id": None}}})  # the resumed start
    keep_wandb_run_id(again, tmp_path)
    assert first.logger.wandb.id and again.logger.wandb.id == first.logger.wandb.id
    assert (tmp_path / "wandb_id.txt").read_text() == first.logger.wandb.id
    explicit = OmegaConf.create({"logger": {"wandb": {"id": "mine"}}})
    keep_wandb_run_id(explicit, tmp_path)
    assert explicit.logger.wandb.id == "mine"
    keep_wandb_run_id(OmegaConf.create({"logger": {"csv": {}}}), tmp_path)  # no W&B: nothing
