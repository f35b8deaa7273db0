"""Train a model: ``python -m encdec.train [model=transformer] [data=multi30k] [key=value ...]``.

Instantiates data -> model -> callbacks -> loggers -> trainer from the Hydra config, fits,
tests the best checkpoint (selected on val), writes predictions and metrics into the run dir and
returns the optimized metric for sweepers.
"""

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from encdec.search import DecodingConfig
from encdec.utils.config import CONFIG_DIR, instantiate, instantiate_group, print_config_tree
from encdec.utils.errors import UserError, exit_on_user_error

log = logging.getLogger(__name__)


def write_test_outputs(model: Any, metrics: dict[str, float], output_dir: Path) -> None:
    """Predictions in corpus order and the metrics with sacreBLEU's signature."""
    suffix = model.decoding.suffix
    predictions = output_dir / "predictions" / f"test{suffix}.txt"
    predictions.parent.mkdir(parents=True, exist_ok=True)
    lines = [model.test_predictions[i] for i in sorted(model.test_predictions)]
    predictions.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    record = {
        "metrics": metrics,
        "bleu_signature": model.test_text.bleu_signature,
        "predictions": str(predictions),
    }
    (output_dir / f"test_metrics{suffix}.json").write_text(json.dumps(record, indent=2))


def train(cfg: DictConfig) -> dict[str, float]:
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    print_config_tree(cfg, output_dir / "config.yaml")

    datamodule = instantiate(cfg.data, "data")
    datamodule.prepare_data()
    tokenizer = datamodule.load_tokenizer()
    tokenizer.save(output_dir / "tokenizer")
    if cfg.model.get("share_embeddings") and not tokenizer.joint:
        raise UserError("model.share_embeddings=true needs data.tokenizer.joint=true")
    model = instantiate(
        cfg.model,
        "model",
        source_vocab_size=tokenizer.source_vocab_size,
        target_vocab_size=tokenizer.target_vocab_size,
    )
    model.attach_tokenizer(tokenizer)
    model.decoding = DecodingConfig(**cfg.decoding)

    callbacks = instantiate_group(cfg.get("callbacks"), "callbacks")
    loggers = instantiate_group(cfg.get("logger"), "logger")
    trainer: L.Trainer = instantiate(
        cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False
    )
    parameters = sum(p.numel() for p in model.parameters())
    for logger in trainer.loggers:
        logger.log_hyperparams(
            {**OmegaConf.to_container(cfg, resolve=True), "parameters": parameters}
        )
    log.info("model %s: %s parameters", type(model).__name__, f"{parameters:,}")

    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint: testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        test_metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
        }
        metrics |= test_metrics
        if trainer.is_global_zero:
            write_test_outputs(model, test_metrics, output_dir)
            print(f"test: {json.dumps(test_metrics, indent=1)}")
            print(f"sacreBLEU signature: {model.test_text.bleu_signature}")
    print(f"run dir: {output_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    torch.set_float32_matmul_precision("high")
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
