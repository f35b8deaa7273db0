"""The shared Lightning half of every Seq2Seq family: training/val/test steps, metrics,
optimizer, checkpoint contents. A family is ``class XSeq2Seq(XNetwork, Seq2SeqModule)``: the
network (``encdec.networks``) has the layers, the step interface and decoding; its constructor
passes the training settings on to ``Seq2SeqModule.__init__``.

What a batch's source is (token ids, or images for captioning), which references decoded text
is scored against and with which metrics are hooks (``batch_source``, ``batch_references``,
``text_metrics``), so the same steps serve translation and captioning.

Validation decodes greedily (``val/bleu``); test decodes as ``decoding`` says (``test/bleu_beam5``).
The tokenizer is stored in the checkpoint, so ``Family.load_from_checkpoint(path).translate(...)``
works on raw strings without Hydra.
"""

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Self

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from encdec.data.tokenization import PAD_ID, Seq2SeqTokenizer
from encdec.decoding.search import DecodingConfig
from encdec.metrics.text import TeacherForcedMetrics, TextMetrics
from encdec.networks.loading import CHECKPOINT_FORMAT, read_checkpoint
from encdec.training.schedules import build_scheduler


def supports_fused_adamw(parameters: list[nn.Parameter]) -> bool:
    """Whether ``torch.optim.AdamW(fused=True)`` takes these: floating point, on CPU or CUDA."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in parameters)


class Seq2SeqModule(L.LightningModule):
    not_hyperparameters: tuple[str, ...] = ()  # arguments a class passes to a base itself

    def __init__(
        self,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        # Lightning collects the arguments of every __init__ on the way here: the network's too
        self.save_hyperparameters(ignore=list(self.not_hyperparameters))
        self.optimizer_settings, self.scheduler_settings = optimizer, scheduler
        self.label_smoothing = label_smoothing
        self.val_teacher_forced = TeacherForcedMetrics()
        self.test_teacher_forced = TeacherForcedMetrics()
        self.val_text = self.text_metrics()
        self.test_text = self.text_metrics()
        self.best_val: dict[str, float] = {}
        self.data_config: dict[str, Any] | None = None  # the training data, for evaluation
        self.test_predictions: dict[int, str] = {}
        self.training_forward = self.forward  # torch.compile'd by compile_training()

    # ---- what a batch holds, and how decoded text is scored ----
    def batch_source(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``encode`` reads: token ids (B, S) and their mask (B, S)."""
        return batch["source"], batch["source_mask"]

    def batch_references(self, batch: dict[str, Any]) -> list[Any]:
        """What decoded text is scored against: one reference string per row."""
        return batch["target_text"]

    def text_metrics(self) -> Metric:
        """A fresh metric over decoded text (``update(hypotheses, references)``); its ``names``
        are logged, the first on the progress bar, and it sets ``bleu_signature``."""
        return TextMetrics()

    def compile_training(self) -> None:
        """Run the teacher-forced training forward through ``torch.compile`` (dynamic shapes:
        every bucket has its own batch and lengths). Validation and search stay eager."""
        self.training_forward = torch.compile(self.forward, dynamic=True)

    # ---- checkpoints ----
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.to_dict()
        checkpoint["encdec_family"] = type(self).__name__
        checkpoint["encdec_format"] = CHECKPOINT_FORMAT
        checkpoint["decoding"] = asdict(self.decoding)  # output limits suit the data
        if self.data_config is not None:
            checkpoint["data"] = self.data_config
        checkpoint["best_val"] = dict(self.best_val)  # best-so-far metrics survive a resume

    @classmethod
    def check_family(cls, family: str | None) -> None:
        if family != cls.__name__:
            raise ValueError(
                f"this checkpoint holds a {family or 'non-encdec'} model, not a {cls.__name__}"
            )

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Self:
        """Lightning's, after checking that a checkpoint file holds this family: another
        family's arguments would reach the constructor as unknown training settings."""
        if isinstance(checkpoint_path, str | Path) and Path(checkpoint_path).is_file():
            cls.check_family(read_checkpoint(checkpoint_path).get("encdec_family"))
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_family(checkpoint.get("encdec_family"))
        if "tokenizer" in checkpoint:
            self.tokenizer = Seq2SeqTokenizer.from_dict(checkpoint["tokenizer"])
        self.best_val = dict(checkpoint.get("best_val", {}))
        self.data_config = checkpoint.get("data", self.data_config)
        if self._trainer is None:  # inference: decode as training did, unless told otherwise
            self.decoding = DecodingConfig(**checkpoint.get("decoding", {}))

    # ---- training ----
    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Label-smoothed cross entropy summed over real tokens, and their count."""
        loss_sum = F.cross_entropy(
            logits.float().flatten(0, 1),
            target.flatten(),
            ignore_index=PAD_ID,
            label_smoothing=self.label_smoothing,
            reduction="sum",
        )
        return loss_sum, (target != PAD_ID).sum()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        src, src_mask = self.batch_source(batch)
        logits = self.training_forward(src, src_mask, batch["target_in"])
        loss_sum, tokens = self.loss(logits, batch["target_out"])
        loss = loss_sum / tokens
        self.log("train/loss", loss, prog_bar=True, batch_size=src.size(0))
        return loss

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], dict[str, Any]]]:
        """(trainable parameters, optimizer options) groups: one, with the optimizer's
        settings (captioners give their image encoder its own learning rate)."""
        return [([p for p in self.parameters() if p.requires_grad], {})]

    def configure_optimizers(self) -> dict[str, Any]:
        settings = dict(self.optimizer_settings)
        weight_decay = settings.pop("weight_decay", 0.0)
        groups = []
        for parameters, options in self.parameter_groups():  # matrices decay, others do not
            decayed = [p for p in parameters if p.dim() >= 2]
            others = [p for p in parameters if p.dim() < 2]
            groups += [
                {"params": decayed, "weight_decay": weight_decay, **options},
                {"params": others, "weight_decay": 0.0, **options},
            ]
        if "foreach" not in settings:  # AdamW's fused kernel: 2.6x faster than its CPU default
            trainable = [p for group in groups for p in group["params"]]
            # Lightning's mixed precision refuses to clip the gradients of a fused optimizer
            mixed_clipped = "mixed" in str(self.trainer.precision) and bool(
                self.trainer.gradient_clip_val
            )
            settings.setdefault("fused", supports_fused_adamw(trainable) and not mixed_clipped)
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], **settings)
        scheduler_settings = dict(self.scheduler_settings)
        scheduler = build_scheduler(
            optimizer,
            scheduler_settings.pop("name"),
            total_steps=self.trainer.estimated_stepping_batches,  # inf under a time budget
            d_model=getattr(self, "d_model", 512),
            **scheduler_settings,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ---- evaluation ----
    def _evaluate(
        self,
        batch: dict[str, Any],
        teacher_forced: TeacherForcedMetrics,
        text: Metric,
        decoding: DecodingConfig,
    ) -> tuple[list[str], float]:
        """Teacher-forced metrics and decoding of one batch: (hypothesis texts, seconds spent
        searching and detokenizing)."""
        src, src_mask = self.batch_source(batch)
        logits = self(src, src_mask, batch["target_in"])
        loss_sum, _ = self.loss(logits, batch["target_out"])
        teacher_forced.update(logits, batch["target_out"], loss_sum, PAD_ID)
        start = time.perf_counter()
        hypotheses = self.generate(src, src_mask, decoding)  # token lists: synced with device
        texts = [self.tokenizer.decode_target(h[0].tokens) for h in hypotheses]
        seconds = time.perf_counter() - start
        text.update(texts, self.batch_references(batch))
        return texts, seconds

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(
            batch,
            self.val_teacher_forced,
            self.val_text,
            DecodingConfig(
                beam_size=1, max_len_a=self.decoding.max_len_a, max_len_b=self.decoding.max_len_b
            ),
        )

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        texts, seconds = self._evaluate(
            batch, self.test_teacher_forced, self.test_text, self.decoding
        )
        self.test_decode_seconds += seconds
        self.test_predictions.update(zip(batch["index"].tolist(), texts, strict=True))

    def _log_epoch(
        self, stage: str, teacher_forced: TeacherForcedMetrics, text: Metric, suffix: str
    ) -> dict[str, float]:
        values = {f"{stage}/{k}": v for k, v in teacher_forced.compute().items()}
        values |= {f"{stage}/{k}{suffix}": v for k, v in text.compute().items()}
        teacher_forced.reset()
        text.reset()
        return {k: float(v) for k, v in values.items()}

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.val_teacher_forced.reset()
            self.val_text.reset()
            return
        values = self._log_epoch("val", self.val_teacher_forced, self.val_text, "")
        for name in self.val_text.names:
            best = max(values[f"val/{name}"], self.best_val.get(name, -math.inf))
            self.best_val[name] = best
            values[f"val/{name}_best"] = best
        shown = f"val/{self.val_text.names[0]}"
        self.log_dict({k: v for k, v in values.items() if k != shown})
        self.log(shown, values[shown], prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self.test_predictions = {}
        self.test_decode_seconds = 0.0  # this process's time in search

    def on_test_epoch_end(self) -> None:
        suffix = self.decoding.suffix
        values = self._log_epoch("test", self.test_teacher_forced, self.test_text, suffix)
        self.log_dict(values)  # callbacks.prediction_files writes the files
