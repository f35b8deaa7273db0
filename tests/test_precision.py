"""bf16 where the machine has it: a config's bf16-mixed trains an LSTM on any CPU (in 32-true,
with a warning, where the CPU has no native bf16), and the saved config says what ran."""

import logging

import pytest
import torch
from omegaconf import OmegaConf

from encdec.launch import precision
from encdec.launch.precision import cpu_has_native_bf16, fit_precision_to_machine
from encdec.train import train
from tests.conftest import compose_config
from tests.test_entry_points import TINY_TRAIN


@pytest.mark.parametrize(
    ("accelerator", "asked", "native", "trained"),
    [
        ("cpu", "bf16-mixed", False, "32-true"),
        ("cpu", "bf16-mixed", True, "bf16-mixed"),
        ("cpu", "32-true", False, "32-true"),
        ("gpu", "bf16-mixed", False, "bf16-mixed"),  # the GPU's bf16, not the CPU's
    ],
)
def test_bf16_falls_back_only_on_a_cpu_without_it(
    monkeypatch, caplog, accelerator, asked, native, trained
):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    trainer = OmegaConf.create({"accelerator": accelerator, "precision": asked})
    with caplog.at_level(logging.WARNING):
        fit_precision_to_machine(trainer)
    assert trainer.precision == trained
    assert ("no native bf16" in caplog.text) == (asked != trained)


def test_a_bf16_config_trains_an_lstm_on_this_cpu(tmp_path):
    overrides = [*TINY_TRAIN["rnn"], "model.net.encoder.cell=lstm", "trainer.precision=bf16-mixed"]
    train(compose_config("train", overrides, tmp_path / "run"))
    saved = OmegaConf.load(tmp_path / "run" / "config.yaml").trainer.precision
    assert saved == ("bf16-mixed" if cpu_has_native_bf16() else "32-true")
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
