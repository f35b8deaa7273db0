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
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from encdec.callbacks.exact_resume import ExactResume
from encdec.callbacks.prediction_files import PredictionFiles
from encdec.data.tokenization import Seq2SeqTokenizer
from encdec.decoding.search import DecodingConfig
from encdec.launch.distributed import (
    SameConfigOnAllRanks,
    SpawnedRanksLeaveTogether,
    end_distributed_job,
    start_ranks_as_this_job,
)
from encdec.launch.precision import fit_precision_to_machine
from encdec.launch.resuming import resume_checkpoint
from encdec.launch.validation import check_devices, validate_config
from encdec.networks.loading import read_checkpoint
from encdec.training.averaging import TopKAveraging
from encdec.training.building import build_model, initialize_from
from encdec.training.checkpointing import (
    AtomicCheckpointIO,
    check_resumable,
    keep_wandb_run_id,
)
from encdec.training.seq2seq_module import Seq2SeqModule
from encdec.utils.config import (
    CONFIG_DIR,
    instantiate,
    instantiate_group,
    print_config_tree,
    user_errors,
)
from encdec.utils.errors import UserError, exit_on_user_error
from encdec.utils.loggers import finishing_wandb_run, log_run_config
from encdec.utils.preload import loaded_libraries
from encdec.utils.run_dir import check_output_dir

log = logging.getLogger(__name__)


def print_test_report(output_dir: Path, suffix: str) -> None:
    """Print the test metrics and the metric's signature the model wrote into the run dir."""
    record = json.loads((output_dir / f"test_metrics{suffix}.json").read_text())
    print(f"test: {json.dumps(record['metrics'], indent=1)}")
    print(f"signature: {record['signature']}")
    if "real_time_factor" in record:
        print(f"real-time factor: {record['real_time_factor']:.4f}")
    print(f"predictions: {record['predictions']}")


def portable_data_config(data: DictConfig) -> dict[str, Any]:
    """The data config resolved, its local paths (``path``, ``hub_id``, ``*_dir``, ``*_path``
    that exist here, in nested nodes too) made absolute: what a checkpoint records so that
    evaluation finds the same data from any working directory."""
    return _absolute_paths(OmegaConf.to_container(data, resolve=True))


def _absolute_paths(config: dict[str, Any]) -> dict[str, Any]:
    for key, value in config.items():
        names_path = key in ("path", "hub_id") or key.endswith(("_dir", "_path"))
        if isinstance(value, dict):
            config[key] = _absolute_paths(value)
        elif names_path and isinstance(value, str) and Path(value).exists():
            config[key] = str(Path(value).resolve())
    return config


def build_data_and_model(cfg: DictConfig) -> tuple[L.LightningDataModule, Seq2SeqModule]:
    """The datamodule, its tokenizer trained or loaded, and a fresh model sized to it (or, with
    ``init_from``, the pretrained checkpoint's tokenizer and every weight of it that fits)."""
    datamodule = instantiate(cfg.data, "data")
    pretrained = read_checkpoint(cfg.init_from) if cfg.get("init_from") else None
    if pretrained is not None:  # fine-tuning reads the pretrained model's vocabulary
        if "tokenizer" not in pretrained:
            raise UserError(f"init_from={cfg.init_from} has no tokenizer")
        datamodule.tokenizer = Seq2SeqTokenizer.from_dict(pretrained["tokenizer"])
    datamodule.prepare_data()
    tokenizer = datamodule.load_tokenizer()
    if OmegaConf.select(cfg, "model.net.share_embeddings") and not tokenizer.joint:
        raise UserError("model.net.share_embeddings=true needs data.tokenizer.joint=true")
    with user_errors("model"):
        model = build_model(
            OmegaConf.to_container(cfg.model, resolve=True), tokenizer.vocab_sizes()
        )
    model.net.attach_tokenizer(tokenizer)
    if pretrained is not None:
        copied, fresh = initialize_from(model.net, pretrained, cfg.init_from)
        log.info("init_from: %d tensors from %s; initialized afresh: %s", copied,
                 cfg.init_from, ", ".join(fresh) or "none")  # fmt: skip
    model.decoding = DecodingConfig().updated(cfg.decoding)
    model.data_config = portable_data_config(cfg.data)  # encdec.evaluate reads the same data
    if cfg.get("compile"):
        model.compile_training()
    return datamodule, model


def select_checkpoint(trainer: L.Trainer, model, datamodule, monitor: str) -> str:
    """``best.ckpt``, or the average of the top-k checkpoints when that scores higher on val
    (``callbacks=averaging``): the choice sees the val split only."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    averaging = next((c for c in trainer.callbacks if isinstance(c, TopKAveraging)), None)
    if not best or averaging is None or not averaging.averaged_path.is_file():
        return best
    scores = {}
    for path in (best, str(averaging.averaged_path)):
        results = trainer.validate(model, datamodule=datamodule, ckpt_path=path, verbose=False)
        scores[path] = results[0][monitor]
    better = max if model.val_text.higher_is_better else min
    chosen = better(scores, key=scores.__getitem__)  # a tie keeps best.ckpt
    log.info("%s on val: %s -> testing %s", monitor, scores, chosen)
    return chosen


def log_global_batch(cfg: DictConfig, trainer: L.Trainer) -> None:
    """Say (and log) how big an optimizer step's batch is: the data config's batch is per
    device, so the global batch grows with the number of processes."""
    key = next(k for k in ("max_tokens", "max_frames", "batch_size") if k in cfg.data)
    per_device = cfg.data[key]
    accumulation = cfg.trainer.get("accumulate_grad_batches", 1)
    total = per_device * trainer.world_size * accumulation
    unit = {"max_tokens": "tokens", "max_frames": "frames"}.get(key, "examples")
    log.info(
        "batch: data.%s=%s %s per device x %d processes x %d accumulated = %s per step",
        key, per_device, unit, trainer.world_size, accumulation, total,
    )  # fmt: skip
    for logger in trainer.loggers:
        logger.log_hyperparams({f"global_batch_{unit}": total, "world_size": trainer.world_size})


def run_callbacks() -> list[L.Callback]:
    """What every trainer of an entry point needs, whatever ``callbacks`` says: an exact resume,
    the test stage's files, ``ddp_spawn`` ranks leaving together."""
    return [ExactResume(), PredictionFiles(), SpawnedRanksLeaveTogether()]


def start_run(cfg: DictConfig) -> Path:
    """Seed, check the run dir, save + print the config and validate it (before any data is
    read); returns the run dir."""
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    check_output_dir(output_dir, cfg.paths.min_free_gb)
    log.info("%s", loaded_libraries())
    fit_precision_to_machine(cfg.trainer)  # before the config is saved: what the run does
    print_config_tree(cfg, output_dir / "config.yaml")
    validate_config(cfg)
    check_devices(cfg.trainer)
    return output_dir


def train(cfg: DictConfig, extra_callbacks: list[L.Callback] = ()) -> dict[str, float]:
    """Fit and test as ``cfg`` says (plus ``extra_callbacks``); the metrics, val and test."""
    output_dir = start_run(cfg)
    datamodule, model = build_data_and_model(cfg)
    model.tokenizer.save(output_dir / "tokenizer")

    callbacks = instantiate_group(cfg.get("callbacks"), "callbacks")
    if not cfg.trainer.get("enable_progress_bar", True):  # the switch wins over the callback
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    callbacks += [SameConfigOnAllRanks(cfg), *run_callbacks(), *extra_callbacks]
    keep_wandb_run_id(cfg, output_dir)  # a resumed run continues its W&B run
    loggers = instantiate_group(cfg.get("logger"), "logger")
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        "trainer",
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],  # a kill mid-write never corrupts last.ckpt
    )
    parameters = log_run_config(trainer.loggers, cfg, model.net)["parameters"]
    log.info("model: %s parameters", f"{parameters['total']:,}")
    log_global_batch(cfg, trainer)

    if cfg.train:
        resume_from = resume_checkpoint(cfg, output_dir)
        if resume_from:
            check_resumable(resume_from, model)
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.test:
        best = select_checkpoint(trainer, model, datamodule, cfg.monitor)
        if not best:
            log.warning("no best checkpoint: testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        test_metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
        }
        metrics |= test_metrics
        if trainer.is_global_zero:
            print_test_report(output_dir, model.decoding.suffix)
    print(f"run dir: {output_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    torch.set_float32_matmul_precision("high")
    start_ranks_as_this_job("encdec.train")  # in a multirun, DDP children run this job only
    try:
        with finishing_wandb_run():  # each job of a multirun gets its own W&B run
            metrics = train(cfg)
    finally:
        end_distributed_job()  # the sweep's next job starts its own ranks
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
