"""bf16 where the machine computes in bf16: a CPU without native bf16 kernels (oneDNN's need
AVX512-BF16 or AMX) has no bf16 LSTM at all and emulates the rest more slowly than fp32, so a
config's ``trainer.precision: bf16-mixed`` (chosen on a machine that has them) trains there in
``32-true``, with a warning, rather than failing deep inside a recurrent layer."""

import logging

import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def on_gpu(trainer: DictConfig) -> bool:
    accelerator = trainer.get("accelerator")
    return accelerator in ("gpu", "cuda") or (
        accelerator in (None, "auto") and torch.cuda.is_available()
    )


def fit_precision_to_machine(trainer: DictConfig) -> None:
    """``trainer.precision`` bf16 on a CPU without native bf16: set to 32-true, saying so."""
    precision = str(trainer.get("precision", "32-true"))
    if not precision.startswith("bf16") or on_gpu(trainer) or cpu_has_native_bf16():
        return
    log.warning(
        "trainer.precision=%s: this CPU has no native bf16 (AVX512-BF16 or AMX), training in "
        "32-true instead",
        precision,
    )
    trainer.precision = "32-true"
