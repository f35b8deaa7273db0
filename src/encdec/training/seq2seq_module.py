"""The one LightningModule: it holds a network (``self.net``, any encoder with any decoder) and
owns the loss, the training/val/test steps and the metrics, nothing else.

It gets the optimizer and the schedule as partial constructors (``_partial_: true`` configs:
any ``torch.optim`` optimizer; the schedules are ``LRScheduler`` subclasses) and the metric
over decoded text the same way (``TextMetrics`` for translation, ``CaptionMetrics`` for
captions). A batch holds ``source`` (token ids (B, S), or images (B, 3, H, W)) and
``source_mask`` (B, S), ``target_in``/``target_out`` (B, T) and ``references`` (one string, or
a list of strings, per row); a batch whose every image failed to decode is None (skipped).

Validation decodes greedily (``val/bleu``); test decodes as ``decoding`` says
(``test/bleu_beam5``). Exact resume, prediction files and the ``ddp_spawn`` teardown are
callbacks (``encdec.callbacks``); the checkpoint layout is ``networks.loading``'s.
"""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import Metric

from encdec.data.tokenization import Seq2SeqTokenizer
from encdec.decoding.ngram_language_model import NgramLanguageModel
from encdec.decoding.search import DecodingConfig
from encdec.metrics.text import TeacherForcedMetrics, TextMetrics
from encdec.networks.loading import CHECKPOINT_FORMAT, check_model_checkpoint
from encdec.networks.network import Network, TeacherForced
from encdec.training.schedules import NO_STEP_BUDGET, takes_keyword
from encdec.utils.errors import UserError
from encdec.utils.special_tokens import EOS_ID, PAD_ID

log = logging.getLogger(__name__)


def supports_fused(parameters: list[nn.Parameter]) -> bool:
    """Whether an optimizer's fused kernel takes these: floating point, on CPU or CUDA."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in parameters)


class Seq2SeqModule(L.LightningModule):
    def __init__(
        self,
        net: Network,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., LRScheduler],
        metrics: Callable[[], Metric] = TextMetrics,
        label_smoothing: float = 0.1,
        encoder_lr: float | None = None,
        attention_regularization: float = 0.0,
        ctc_weight: float = 0.0,
        language_model: Callable[..., NgramLanguageModel] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= ctc_weight <= 1.0:
            raise UserError(f"model.ctc_weight must be in [0, 1], got {ctc_weight}")
        if net.ctc_only and ctc_weight != 1.0:
            raise UserError(
                "a CTC-only model (model.net.decoder=null) trains with model.ctc_weight=1"
            )
        self.ctc_weight = ctc_weight  # loss = w * CTC + (1 - w) * cross entropy
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.label_smoothing = label_smoothing
        self.encoder_lr = encoder_lr  # None: the optimizer's learning rate
        self.attention_regularization = attention_regularization
        self.val_teacher_forced = TeacherForcedMetrics()
        self.test_teacher_forced = TeacherForcedMetrics()
        self.val_text, self.test_text = metrics(), metrics()
        self.best_val: dict[str, float] = {}
        self.model_config: dict[str, Any] = {}  # the model's config: how a checkpoint rebuilds it
        self.data_config: dict[str, Any] | None = None  # the training data, for evaluation
        self.image_settings: dict[str, Any] | None = None  # how the data prepared images
        self.test_predictions: dict[int, str] = {}
        self.training_forward = self.net.teacher_forced  # torch.compile'd by compile_training()
        self.language_model_factory = language_model  # estimated on the training targets

    # ---- what the network holds ----
    @property
    def tokenizer(self) -> Any:
        return self.net.tokenizer

    @property
    def decoding(self) -> DecodingConfig:
        return self.net.decoding

    @decoding.setter
    def decoding(self, decoding: DecodingConfig) -> None:
        self.net.decoding = decoding

    def forward(
        self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor
    ) -> torch.Tensor:
        return self.net(src, src_mask, tgt_in)  # logits (B, T, V)

    def compile_training(self) -> None:
        """Run the teacher-forced training forward through ``torch.compile`` (dynamic shapes:
        every bucket has its own batch and lengths). Validation and search stay eager."""
        self.training_forward = torch.compile(self.net.teacher_forced, dynamic=True)

    def setup(self, stage: str) -> None:
        """From the data: the training references where a metric takes CIDEr-D's document
        frequencies from them, and how images are prepared (kept in checkpoints, for
        captioning image files)."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if hasattr(datamodule, "training_references"):
            for metric in (self.val_text, self.test_text):
                if getattr(metric, "needs_training_references", False):
                    metric.set_document_frequencies(datamodule.training_references())
        if hasattr(datamodule, "image_settings"):
            self.image_settings = datamodule.image_settings()
        if self.language_model_factory is not None and self.net.language_model is None:
            self.net.language_model = self.estimate_language_model(datamodule)

    def recount_language_model(self, factory: Callable[..., NgramLanguageModel]) -> None:
        """Decode with the language model ``factory`` counts on the training targets when the
        data are set up, instead of the one the checkpoint carries."""
        self.language_model_factory = factory
        self.net.language_model = None

    def estimate_language_model(self, datamodule: Any) -> NgramLanguageModel:
        """``model.language_model`` estimated on the training targets, tokenized."""
        if not hasattr(datamodule, "tokenizer_corpus"):
            raise UserError("model.language_model needs data with training targets to count")
        _, targets, _ = datamodule.tokenizer_corpus()
        sentences = self.tokenizer.encode_target(list(targets))
        net = self.net
        language_model = self.language_model_factory(
            sentences=sentences,
            vocab_size=net.target_vocab_size,
            bos_id=net.bos_id,
            eos_id=net.eos_id,
            impossible=(net.pad_id, net.bos_id),
        )
        log.info(
            "language model: %d-gram counted on %d training targets",
            language_model.order, len(sentences),
        )  # fmt: skip
        return language_model

    # ---- checkpoints ----
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["encdec_format"] = CHECKPOINT_FORMAT
        checkpoint["encdec_model"] = self.model_config
        checkpoint["vocab_sizes"] = self.net.vocab_sizes()
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.to_dict()
        checkpoint["decoding"] = asdict(self.decoding)  # output limits suit the data
        if self.data_config is not None:
            checkpoint["data"] = self.data_config
        checkpoint["image_settings"] = self.image_settings
        checkpoint["best_val"] = dict(self.best_val)  # best-so-far metrics survive a resume
        if self.net.language_model is not None:
            checkpoint["language_model"] = self.net.language_model.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_model_checkpoint(checkpoint, "this checkpoint")
        if "tokenizer" in checkpoint:
            self.net.attach_tokenizer(Seq2SeqTokenizer.from_dict(checkpoint["tokenizer"]))
        self.best_val = dict(checkpoint.get("best_val", {}))
        self.data_config = checkpoint.get("data", self.data_config)
        self.image_settings = checkpoint.get("image_settings", self.image_settings)
        self.net.attach_language_model(checkpoint)
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

    def ctc_loss(self, output: TeacherForced, target_out: torch.Tensor) -> torch.Tensor:
        """CTC loss summed over the batch: the target tokens without ``</s>`` (blank = PAD)
        against the CTC head's log-probabilities over the encoder positions."""
        if output.ctc_log_probs is None or output.ctc_mask is None:
            raise UserError("model.ctc_weight > 0 needs a CTC head: model.net.ctc=true")
        labels = target_out.masked_fill(target_out == EOS_ID, PAD_ID)  # (B, T)
        return F.ctc_loss(
            output.ctc_log_probs.transpose(0, 1),  # (S, B, V)
            labels,
            output.ctc_mask.sum(1),
            (labels != PAD_ID).sum(1),
            blank=PAD_ID,
            reduction="sum",
            zero_infinity=True,  # an output longer than its input adds nothing, not inf
        )

    def attention_penalty(self, attention: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Doubly stochastic attention (Xu et al., 2015): mean over source positions of
        (1 - sum_t alpha_t,s)^2, the sum over real target steps."""
        real_steps = (target != PAD_ID).unsqueeze(2)  # (B, T, 1)
        per_position = (attention * real_steps).sum(dim=1)  # (B, S)
        return ((1.0 - per_position) ** 2).mean()

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:
            return None
        src = batch["source"]
        output = self.training_forward(src, batch["source_mask"], batch["target_in"])
        tokens = (batch["target_out"] != PAD_ID).sum()
        if output.logits is None:  # CTC only
            loss = self.ctc_loss(output, batch["target_out"]) / tokens
            self.log("train/ctc_loss", loss, prog_bar=True, batch_size=src.size(0))
            return loss
        loss_sum, _ = self.loss(output.logits, batch["target_out"])
        cross_entropy = loss_sum / tokens
        self.log("train/loss", cross_entropy, prog_bar=True, batch_size=src.size(0))
        loss = cross_entropy
        if self.ctc_weight:
            ctc = self.ctc_loss(output, batch["target_out"]) / tokens
            self.log("train/ctc_loss", ctc, batch_size=src.size(0))
            loss = self.ctc_weight * ctc + (1 - self.ctc_weight) * cross_entropy
        if not self.attention_regularization:
            return loss
        attention = output.attention
        if attention is None:
            raise UserError(
                "model.attention_regularization needs a decoder that attends in training "
                "(encdec.modules.rnn.AttentionRNNDecoder)"
            )
        penalty = self.attention_penalty(attention, batch["target_out"])
        self.log("train/attention_penalty", penalty, batch_size=src.size(0))
        return loss + self.attention_regularization * penalty

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], dict[str, Any]]]:
        """(trainable parameters, optimizer options): the encoder with ``encoder_lr`` where it
        is set (a frozen encoder has none to train), the rest with the optimizer's rate."""
        trainable = [p for p in self.parameters() if p.requires_grad]
        if self.encoder_lr is None:
            return [(trainable, {})]
        encoder = {id(p) for p in self.net.encoder.parameters()}
        return [
            ([p for p in trainable if id(p) in encoder], {"lr": self.encoder_lr}),
            ([p for p in trainable if id(p) not in encoder], {}),
        ]

    def configure_optimizers(self) -> dict[str, Any]:
        keywords = getattr(self.optimizer_factory, "keywords", {})  # the optimizer's config
        weight_decay = keywords.get("weight_decay", 0.0)
        groups = []
        for parameters, options in self.parameter_groups():  # matrices decay, others do not
            decayed = [p for p in parameters if p.dim() >= 2]
            others = [p for p in parameters if p.dim() < 2]
            groups += [
                {"params": decayed, "weight_decay": weight_decay, **options},
                {"params": others, "weight_decay": 0.0, **options},
            ]
        settings: dict[str, Any] = {}
        fusable = takes_keyword(self.optimizer_factory, "fused")
        if fusable and not {"fused", "foreach"} & set(keywords):
            # the fused kernel (AdamW: 2.6x faster than its CPU default); Lightning's mixed
            # precision refuses to clip the gradients of a fused optimizer
            trainable = [p for group in groups for p in group["params"]]
            mixed_clipped = "mixed" in str(self.trainer.precision) and bool(
                self.trainer.gradient_clip_val
            )
            settings["fused"] = supports_fused(trainable) and not mixed_clipped
        optimizer = self.optimizer_factory([g for g in groups if g["params"]], **settings)
        if takes_keyword(self.scheduler_factory, "total_steps"):
            # the trainer's estimate: infinite without a step or epoch limit, -1 for an endless
            # loader without max_steps (cases check_step_budget cannot see in the config)
            total_steps = self.trainer.estimated_stepping_batches
            if not 0 <= total_steps < math.inf:
                name = self.scheduler_factory.func.__name__
                raise UserError(NO_STEP_BUDGET.format(name))
            scheduler = self.scheduler_factory(optimizer, total_steps=int(total_steps))
        else:
            scheduler = self.scheduler_factory(optimizer)
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
        src, src_mask = batch["source"], batch["source_mask"]
        if not self.net.ctc_only:  # a CTC-only model has no teacher-forced outputs
            logits = self.net(src, src_mask, batch["target_in"])
            loss_sum, _ = self.loss(logits, batch["target_out"])
            teacher_forced.update(logits, batch["target_out"], loss_sum, PAD_ID)
        start = time.perf_counter()
        hypotheses = self.net.generate(src, src_mask, decoding)  # token lists: synced with device
        texts = [self.tokenizer.decode_target(h[0].tokens) for h in hypotheses]
        seconds = time.perf_counter() - start
        text.update(texts, batch["references"])
        return texts, seconds

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is None:
            return
        greedy = DecodingConfig(
            beam_size=1, max_len_a=self.decoding.max_len_a, max_len_b=self.decoding.max_len_b
        )
        self._evaluate(batch, self.val_teacher_forced, self.val_text, greedy)

    def test_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is None:
            return
        texts, seconds = self._evaluate(
            batch, self.test_teacher_forced, self.test_text, self.decoding
        )
        self.test_decode_seconds += seconds
        if self.net.frontend is not None:  # speech: the real-time factor's audio seconds
            self.test_audio_seconds += (
                float(batch["source_mask"].sum()) / self.net.frontend.sample_rate
            )
        self.test_predictions.update(zip(batch["index"].tolist(), texts, strict=True))

    def _log_epoch(
        self, stage: str, teacher_forced: TeacherForcedMetrics, text: Metric, suffix: str
    ) -> dict[str, float]:
        values = {}
        if not self.net.ctc_only:
            values = {f"{stage}/{k}": v for k, v in teacher_forced.compute().items()}
        values |= {f"{stage}/{k}{suffix}": v for k, v in text.compute().items()}
        teacher_forced.reset()
        text.reset()
        return {k: float(v) for k, v in values.items()}

    def tracked_metrics(self) -> tuple[str, ...]:
        """The val metrics whose best value is kept (``val/<name>_best``; one may be the
        monitor): the decoded metric's, each better in its direction."""
        return self.val_text.names

    def batch_units(self, batch: dict[str, Any]) -> torch.Tensor:
        """(2,) what a training batch holds, for throughput: its real target tokens and source
        tokens (speech: 10-ms input frames; an image: none)."""
        target = (batch["target_out"] != PAD_ID).sum()
        if "source_mask" not in batch:  # captioning: images, not source tokens
            return torch.stack([target, torch.zeros_like(target)])
        source = batch["source_mask"].sum()
        if self.net.frontend is not None:  # speech: the source's samples counted as frames
            source = source // self.net.frontend.log_mel.hop_length
        return torch.stack([target, source])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.val_teacher_forced.reset()
            self.val_text.reset()
            return
        values = self._log_epoch("val", self.val_teacher_forced, self.val_text, "")
        better = max if self.val_text.higher_is_better else min  # BLEU up, WER down
        for name in self.tracked_metrics():
            worst = -math.inf if self.val_text.higher_is_better else math.inf
            best = better(values[f"val/{name}"], self.best_val.get(name, worst))
            self.best_val[name] = best
            values[f"val/{name}_best"] = best
        shown = f"val/{self.val_text.names[0]}"
        self.log_dict({k: v for k, v in values.items() if k != shown})
        self.log(shown, values[shown], prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self.test_predictions = {}
        self.test_decode_seconds = 0.0  # this process's time in search
        self.test_audio_seconds = 0.0  # and the audio it transcribed (speech)

    def on_test_epoch_end(self) -> None:
        suffix = self.decoding.suffix
        values = self._log_epoch("test", self.test_teacher_forced, self.test_text, suffix)
        self.log_dict(values)  # callbacks.prediction_files writes the files
