"""logger=tensorboard through the CLI: scalars, the run's config, validation samples and
attention maps end up in event files that TensorBoard reads."""

from pathlib import Path

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import FAST
from tests.test_entry_points import TINY
from tests.warm_cli import run_module

ROOT = Path(__file__).resolve().parents[1]


def test_tensorboard_logger_records_metrics_config_samples_and_attention(tmp_path):
    run = tmp_path / "run"
    overrides = [
        "model=attention",
        *TINY["attention"],
        *FAST,
        "logger=tensorboard",
        "+callbacks.sample_table._target_=encdec.callbacks.samples.ValidationSamples",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "trainer.log_every_n_steps=1",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run}",
    ]
    result = run_module("encdec.train", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    everything = {"tensors": 0, "images": 0}  # every event file of the dir (fit, then test)
    logged = EventAccumulator(str(run / "tensorboard"), size_guidance=everything).Reload()
    scalars = logged.Tags()["scalars"]
    assert {"train/loss", "val/bleu", "val/exact_match", "test/bleu"} <= set(scalars)
    assert len(logged.Scalars("val/bleu")) == 2  # one per validation
    samples = logged.Tensors("val/samples/text_summary")
    assert [event.step for event in samples] == [2, 4]
    assert (
        "| # | source | reference | hypothesis |" in samples[0].tensor_proto.string_val[0].decode()
    )
    assert {"val/attention/epoch0_step2_0", "val/attention/epoch1_step4_1"} <= set(
        logged.Tags()["images"]
    )
    hyperparameters = yaml.safe_load((run / "tensorboard" / "hparams.yaml").read_text())
    assert hyperparameters["model"]["net"]["decoder"]["_target_"].endswith("AttentionRNNDecoder")
