"""Evaluate a checkpoint on the test split.

``python -m encdec.evaluate ckpt_path=... [decoding.beam_size=5]`` reproduces the test metrics
of ``encdec.train`` (the data config and decoding recorded in the checkpoint, the same weights)
and writes predictions and metrics into its own run dir. ``data=NAME ...`` evaluates on other
data, if it builds the checkpoint's tokenizer; ``model/language_model=ngram ...`` decodes with a
language model counted anew on the training transcripts instead of the checkpoint's.
"""

import logging

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from encdec.train import print_test_report, run_callbacks, start_run
from encdec.training.building import load_model
from encdec.training.seq2seq_module import Seq2SeqModule
from encdec.utils.config import CONFIG_DIR, instantiate, instantiate_group
from encdec.utils.errors import UserError, exit_on_user_error
from encdec.utils.loggers import finishing_wandb_run, log_run_config

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig, model: Seq2SeqModule) -> L.LightningDataModule:
    """The checkpoint's own data, or ``cfg.data`` if given, checked to build the checkpoint's
    tokenizer (another corpus or language pair would be decoded with the wrong vocabulary)."""
    if cfg.get("data") is None:
        if model.data_config is None:
            raise UserError(
                f"checkpoint '{cfg.ckpt_path}' does not record its data (written before "
                "checkpoints did): give its training data, e.g. data=multi30k data.path=..."
            )
        data_config = OmegaConf.create(model.data_config)
        if cfg.get("test_split"):  # another split of the same data
            if "splits" not in data_config:
                raise UserError(
                    "test_split: the checkpoint's data has no data.splits to choose from"
                )
            data_config.splits.test = cfg.test_split
        datamodule = instantiate(data_config, "data")
    else:
        datamodule = instantiate(cfg.data, "data")
        datamodule.prepare_data()
        if datamodule.load_tokenizer().to_dict() != model.tokenizer.to_dict():
            raise UserError(
                f"the data config given does not build the tokenizer of '{cfg.ckpt_path}' "
                "(other data or tokenizer settings): leave data=... out to evaluate on the "
                "checkpoint's own data"
            )
    datamodule.tokenizer = model.tokenizer  # evaluate with the vocabulary the model learned
    return datamodule


def evaluate(cfg: DictConfig) -> dict[str, float]:
    output_dir = start_run(cfg)
    model = load_model(cfg.ckpt_path)
    if model.tokenizer is None:
        raise UserError(f"checkpoint '{cfg.ckpt_path}' has no tokenizer")
    model.decoding = model.decoding.updated(cfg.decoding)
    language_model = OmegaConf.select(cfg, "model.language_model")
    if language_model is not None:
        model.recount_language_model(instantiate(language_model, "model.language_model"))
    datamodule = build_datamodule(cfg, model)
    loggers = instantiate_group(cfg.get("logger"), "logger")
    trainer: L.Trainer = instantiate(
        cfg.trainer, "trainer", logger=loggers or False, callbacks=run_callbacks()
    )
    log_run_config(trainer.loggers, cfg, model.net)
    trainer.test(model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if trainer.is_global_zero:
        print_test_report(output_dir, model.decoding.suffix)
        print(f"run dir: {output_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    with finishing_wandb_run():  # each job of a multirun gets its own W&B run
        evaluate(cfg)


if __name__ == "__main__":
    main()
