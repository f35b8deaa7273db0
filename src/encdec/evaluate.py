"""Evaluate a checkpoint on the test split.

``python -m encdec.evaluate ckpt_path=... [decoding.beam_size=5] [data=... as in training]``
reproduces the test metrics of ``encdec.train`` (same data, weights and decoding) and writes
predictions and metrics into its own run dir.
"""

import logging

import hydra
import lightning as L
from omegaconf import DictConfig

from encdec.models.loading import load_model
from encdec.search import DecodingConfig
from encdec.train import print_test_report, start_run
from encdec.utils.config import CONFIG_DIR, instantiate, instantiate_group
from encdec.utils.errors import UserError, exit_on_user_error
from encdec.utils.loggers import finishing_wandb_run, log_run_config
from encdec.utils.preload import with_fast_libraries

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    output_dir = start_run(cfg)
    model = load_model(cfg.ckpt_path)
    if model.tokenizer is None:
        raise UserError(f"checkpoint '{cfg.ckpt_path}' has no tokenizer")
    model.decoding = DecodingConfig(**cfg.decoding)
    datamodule = instantiate(cfg.data, "data")
    datamodule.tokenizer = model.tokenizer  # evaluate with the vocabulary the model learned
    loggers = instantiate_group(cfg.get("logger"), "logger")
    trainer: L.Trainer = instantiate(cfg.trainer, "trainer", logger=loggers or False)
    log_run_config(trainer.loggers, cfg, model)
    trainer.test(model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if trainer.is_global_zero:
        print_test_report(output_dir, model.decoding.suffix)
        print(f"run dir: {output_dir}")
    return metrics


@with_fast_libraries
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    with finishing_wandb_run():  # each job of a multirun gets its own W&B run
        evaluate(cfg)


if __name__ == "__main__":
    main()
