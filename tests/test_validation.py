"""Config validation at start-up: every shipped config passes; a typo, a wrong type or an
out-of-range value fails in one line naming the key, before any data is read."""

import pytest
import torch

from encdec.launch.validation import check_devices, validate_config
from encdec.utils.errors import UserError
from tests.conftest import compose_config
from tests.test_entry_points import GROUP_OPTIONS, _cli, option_overrides


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_config_validates(tmp_path, group, option):
    validate_config(compose_config("train", option_overrides(group, option), tmp_path / "run"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["+model.net.decoder.hiden_size=3"],
            "unknown key 'model.net.decoder.hiden_size'; did you mean 'hidden_size'?",
        ),
        (["data.max_tokens=lots"], "data.max_tokens='lots': expected an integer"),
        (["model.net.decoder.dropout=1.5"], r"model.net.decoder.dropout=1.5: must be in \[0, 1\)"),
        (["decoding.beam_size=0"], r"decoding.beam_size=0: must be in \[1, inf\)"),
        (["model=transformer", "model.net.encoder.norm_first=maybe"], "expected true or false"),
        (["+model.optimizer.momentum=0.9"], "unknown key 'model.optimizer.momentum'"),
        (["model.scheduler.warmup_steps=-1"], "model.scheduler.warmup_steps=-1: must be in"),
        (["+data.tokenizer.size=8"], "unknown key 'data.tokenizer.size'; allowed: joint, kind"),
        (["+trainer.max_epoch=3"], "unknown key 'trainer.max_epoch'; did you mean 'max_epochs'"),
        (["callbacks.early_stopping.patience=x"], "patience='x': expected an integer"),
        (["trainer.precision=17"], "trainer.precision=17: expected one of"),
        (["+decoding.beam=4"], "unknown key 'decoding.beam'; did you mean 'beam_size'"),
        (["decoding.lm_weight=-0.1"], r"decoding.lm_weight=-0.1: must be in \[0, 1\]"),
        (
            [
                "model=speech_transformer",
                "data=speech_commands",
                "model/language_model=ngram",
                "model.language_model.order=0",
            ],
            r"model.language_model.order=0: must be in \[1, inf\)",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path, overrides, message):
    with pytest.raises(UserError, match=message):
        validate_config(compose_config("train", overrides, tmp_path / "run"))


def test_library_kwargs_pass_through(tmp_path):
    """WandbLogger hands unknown keywords to wandb.init: they cannot be judged, so they pass."""
    validate_config(compose_config("train", ["+logger.wandb.entity=me"], tmp_path / "run"))


def test_cli_fails_before_reading_data(tmp_path):
    result = _cli(
        "encdec.train",
        "data=multi30k",
        "data.path=/nonexistent",
        "model.net.decoder.dropout=1.5",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: model.net.decoder.dropout=1.5: must be in [0, 1)"
    )


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="needs a machine without GPUs")
def test_more_gpus_than_exist_is_one_line(tmp_path):
    cfg = compose_config("train", ["trainer=gpu", "trainer.devices=4"], tmp_path / "run")
    with pytest.raises(UserError, match="trainer.devices=4 but this machine has 0 GPU"):
        check_devices(cfg.trainer)
    check_devices(compose_config("train", ["trainer=ddp_sim"], tmp_path / "cpu").trainer)
