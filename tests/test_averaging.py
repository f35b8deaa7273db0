"""Checkpoint averaging: the mean of identical checkpoints is that checkpoint, of different ones
their element-wise mean; mismatched checkpoints are refused; training picks the average on val."""

import json
import subprocess
import sys
from pathlib import Path

import lightning
import pytest
import torch

from encdec.train import train
from encdec.training.averaging import average_checkpoints
from encdec.training.building import load_model
from encdec.utils.errors import UserError
from tests.conftest import TINY_MODELS, compose_config, model_checkpoint
from tests.test_entry_points import TINY_TRAIN


def save_checkpoint(model, path, **changes) -> None:
    checkpoint = model_checkpoint(model, **changes)
    torch.save({**checkpoint, "pytorch-lightning_version": lightning.__version__}, path)


def test_average_of_identical_checkpoints_is_that_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = TINY_MODELS["transformer-prenorm"]()
    save_checkpoint(model, tmp_path / "a.ckpt")
    paths = [tmp_path / "a.ckpt"] * 3
    averaged = torch.load(average_checkpoints(paths, tmp_path / "avg.ckpt"), weights_only=True)
    for name, tensor in model.state_dict().items():
        assert torch.equal(averaged["state_dict"][name], tensor), name
    assert "optimizer_states" not in averaged  # not a training state to resume from
    loaded = load_model(tmp_path / "avg.ckpt")
    assert all(
        torch.equal(p, q) for p, q in zip(loaded.parameters(), model.parameters(), strict=True)
    )


def test_average_of_two_checkpoints_is_their_mean(tmp_path):
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(TINY_MODELS["bahdanau"]())
        save_checkpoint(models[-1], tmp_path / f"{seed}.ckpt")
    averaged = torch.load(
        average_checkpoints([tmp_path / "0.ckpt", tmp_path / "1.ckpt"], tmp_path / "avg.ckpt"),
        weights_only=True,
    )["state_dict"]
    for name, first in models[0].state_dict().items():
        second = models[1].state_dict()[name]
        torch.testing.assert_close(averaged[name], (first + second) / 2)


def test_mismatched_checkpoints_are_refused(tmp_path):
    save_checkpoint(TINY_MODELS["rnn-gru"](), tmp_path / "rnn.ckpt")
    save_checkpoint(TINY_MODELS["bahdanau"](), tmp_path / "attention.ckpt")
    gru = TINY_MODELS["rnn-gru"]()
    lstm = TINY_MODELS["rnn-lstm-bi"]()  # another network, but declared as the GRU's
    save_checkpoint(lstm, tmp_path / "lstm.ckpt", encdec_model=gru.model_config)
    with pytest.raises(UserError, match="another network"):
        average_checkpoints([tmp_path / "rnn.ckpt", tmp_path / "attention.ckpt"], tmp_path / "x")
    with pytest.raises(UserError, match="other parameters"):
        average_checkpoints([tmp_path / "rnn.ckpt", tmp_path / "lstm.ckpt"], tmp_path / "x")


def test_training_with_averaging_tests_the_checkpoint_chosen_on_val(tmp_path, caplog):
    overrides = [
        *(
            o if o != "callbacks=default" else "callbacks=averaging"
            for o in TINY_TRAIN["transformer"]
        ),
        "callbacks.checkpoint_averaging.top_k=2",
        "trainer.max_epochs=3",
    ]
    caplog.set_level("INFO", logger="encdec.train")
    metrics = train(compose_config("train", overrides, tmp_path / "run"))
    checkpoints = tmp_path / "run" / "checkpoints"
    assert len(list((checkpoints / "top").glob("*.ckpt"))) == 2
    averaged = torch.load(checkpoints / "averaged.ckpt", weights_only=True)
    assert len(averaged["averaged_from"]) == 2
    choice = next(r.getMessage() for r in caplog.records if "-> testing" in r.getMessage())
    assert "averaged.ckpt" in choice and "best.ckpt" in choice
    record = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert record["metrics"]["test/bleu"] == pytest.approx(metrics["test/bleu"])


def test_average_checkpoints_script(tmp_path):
    model = TINY_MODELS["rnn-gru"]()
    save_checkpoint(model, tmp_path / "a.ckpt")
    script = Path(__file__).resolve().parents[1] / "scripts" / "average_checkpoints.py"
    command = [sys.executable, str(script), "--output", str(tmp_path / "avg.ckpt")]
    done = subprocess.run([*command, str(tmp_path / "a.ckpt")] * 1, capture_output=True, text=True)
    assert done.returncode == 0 and "averaged 1 checkpoints" in done.stdout
    missing = subprocess.run(
        [*command, str(tmp_path / "none.ckpt")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "none.ckpt" in missing.stderr
    assert "Traceback" not in missing.stderr
