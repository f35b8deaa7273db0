"""The LightningModule of speech synthesis: ``Seq2SeqModule`` (optimizer, schedule, checkpoint
contents) with synthesis's loss and metrics.

Loss (Tacotron 2): L1 and L2 (weights ``l1_weight``, ``l2_weight``) between the normalized
reference log-mel frames and the predicted ones, before and after the post-net, over real frames;
plus the stop token's binary cross entropy (``stop_weight``; the one positive step of each
utterance weighted ``stop_pos_weight``); plus, optionally, the guided-attention loss (Tachibana
et al. 2017, ``guided_attention_weight``): attention far from the diagonal of text position
against time is penalized by 1 - exp(-(s/S - t/T)^2 / 2 sigma^2), which makes a small corpus
align in minutes.

Validation and test synthesize greedily (until the stop token) and score MCD-DTW against the
reference recordings (``metrics.mel_cepstral_distortion``) beside the teacher-forced loss;
``val/loss`` selects checkpoints (MCD-DTW does not see length: a model that never stops can
score lower than one that does).
The network's per-bin mel normalization is computed from the training data when a fit starts.
"""

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric, Metric

from encdec.metrics.mel_cepstral_distortion import MelCepstralDistortion
from encdec.networks.text_to_speech import SynthesisOutput, TextToSpeech
from encdec.training.seq2seq_module import Seq2SeqModule
from encdec.utils.errors import UserError


def guided_attention_loss(
    attention: torch.Tensor, step_mask: torch.Tensor, source_mask: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Mean over real (step, position) pairs of attention (B, T, S) x the penalty
    1 - exp(-(s/S_b - t/T_b)^2 / (2 sigma^2)), each row's own lengths S_b and T_b."""
    steps = step_mask.sum(1, keepdim=True).float()  # (B, 1)
    positions = source_mask.sum(1, keepdim=True).float()  # (B, 1)
    t = torch.arange(attention.size(1), device=attention.device)[None] / steps  # (B, T)
    s = torch.arange(attention.size(2), device=attention.device)[None] / positions  # (B, S)
    penalty = 1 - torch.exp(-((s[:, None, :] - t[:, :, None]) ** 2) / (2 * sigma**2))
    real = step_mask[:, :, None] & source_mask[:, None, :]  # (B, T, S)
    return (attention.float() * penalty * real).sum() / step_mask.sum()


class SynthesisModule(Seq2SeqModule):
    net: TextToSpeech

    def __init__(
        self,
        net: TextToSpeech,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., LRScheduler],
        metrics: Callable[[], Metric] = MelCepstralDistortion,
        l1_weight: float = 1.0,
        l2_weight: float = 1.0,
        stop_weight: float = 1.0,
        stop_pos_weight: float = 5.0,
        guided_attention_weight: float = 0.0,
        guided_attention_sigma: float = 0.2,
        encoder_lr: float | None = None,
    ) -> None:
        super().__init__(net, optimizer, scheduler, metrics, 0.0, encoder_lr)
        self.l1_weight, self.l2_weight = l1_weight, l2_weight
        self.stop_weight, self.stop_pos_weight = stop_weight, stop_pos_weight
        self.guided_attention_weight = guided_attention_weight
        self.guided_attention_sigma = guided_attention_sigma
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    def setup(self, stage: str) -> None:
        """Before a fit: the spectrograms' per-bin mean and deviation over the first training
        clips (a resumed fit then loads the checkpoint's)."""
        super().setup(stage)
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if stage == "fit" and not bool(self.net.normalized) and datamodule is not None:
            log_mels = []
            device = self.net.mel_mean.device
            for clip in datamodule.mel_statistics_clips():
                every_sample = torch.ones(1, len(clip), dtype=torch.bool, device=device)
                log_mel, _ = self.net.log_mel(clip[None].to(device), every_sample)
                log_mels.append(log_mel[0])
            frames = torch.cat(log_mels)  # (T, M)
            self.net.set_normalization(frames.mean(0), frames.std(0))

    # ---- loss ----
    def synthesis_losses(
        self, output: SynthesisOutput, source_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``loss`` (what is minimized) and its parts: ``mel``, ``stop``, ``guided_attention``."""
        real = output.frame_mask.unsqueeze(-1).float()  # (B, T, 1)
        values = real.sum() * output.target.size(-1)

        def spectral(predicted: torch.Tensor) -> torch.Tensor:
            difference = (predicted.float() - output.target) * real
            l1 = difference.abs().sum() / values
            return self.l1_weight * l1 + self.l2_weight * difference.square().sum() / values

        mel = spectral(output.frames) + spectral(output.refined)
        last_step = output.step_mask.sum(1) - 1  # (B,) the step holding each row's last frame
        stop_target = F.one_hot(last_step, output.stop_logits.size(1)).float()  # (B, T/r)
        stop = F.binary_cross_entropy_with_logits(
            output.stop_logits.float(), stop_target, reduction="none",
            pos_weight=torch.tensor(self.stop_pos_weight, device=stop_target.device),
        )[output.step_mask].mean()  # fmt: skip
        losses = {"mel": mel, "stop": stop}
        loss = mel + self.stop_weight * stop
        if self.guided_attention_weight:
            if output.attention is None:
                raise UserError(
                    "model.guided_attention_weight needs a decoder that attends in training "
                    "(the attention RNN decoder, or the Transformer's with "
                    "model.net.decoder.guided_heads > 0)"
                )
            guided = guided_attention_loss(
                output.attention, output.step_mask, source_mask, self.guided_attention_sigma
            )
            losses["guided_attention"] = guided
            loss = loss + self.guided_attention_weight * guided
        return {"loss": loss, **losses}

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:
            return None
        output = self.training_forward(
            batch["source"], batch["source_mask"], batch["audio"], batch["audio_mask"]
        )
        losses = self.synthesis_losses(output, batch["source_mask"])
        size = batch["source"].size(0)
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=size)
        for name, value in losses.items():
            if name != "loss":
                self.log(f"train/{name}_loss", value, batch_size=size)
        return losses["loss"]

    # ---- evaluation ----
    def _score(self, batch: dict[str, Any], loss: MeanMetric, metric: Metric) -> tuple[list, float]:
        """Teacher-forced loss, greedy synthesis and MCD of one batch: (each row's
        ``Synthesized``, seconds spent synthesizing)."""
        src, src_mask = batch["source"], batch["source_mask"]
        output = self.net.teacher_forced(src, src_mask, batch["audio"], batch["audio_mask"])
        loss.update(self.synthesis_losses(output, src_mask)["loss"].detach())
        started = time.perf_counter()
        synthesized = self.net.synthesize(src, src_mask)
        seconds = time.perf_counter() - started
        log_mel = self.net.denormalize(output.target)  # the teacher-forced pass's reference
        references = [log_mel[row][output.frame_mask[row]] for row in range(log_mel.size(0))]
        metric.update([s.log_mel for s in synthesized], references)
        return synthesized, seconds

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is not None:
            self._score(batch, self.val_loss, self.val_text)

    def test_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is None:
            return
        synthesized, seconds = self._score(batch, self.test_loss, self.test_text)
        self.test_decode_seconds += seconds
        hop = self.net.mel.hop_length / self.net.sample_rate
        self.test_audio_seconds += sum(len(s.log_mel) for s in synthesized) * hop
        for index, text, result in zip(
            batch["index"].tolist(), batch["references"], synthesized, strict=True
        ):
            ending = "stop token" if result.stopped else "frame limit"
            self.test_predictions[index] = f"{text}\t{len(result.log_mel)} frames ({ending})"

    def batch_units(self, batch: dict[str, Any]) -> torch.Tensor:
        """(2,) the target audio's 10-ms frames and the characters of a training batch."""
        frames = batch["audio_mask"].sum() // self.net.mel.hop_length
        return torch.stack([frames, batch["source_mask"].sum()])

    def tracked_metrics(self) -> tuple[str, ...]:
        """MCD and the teacher-forced loss (both lower-is-better): the loss selects checkpoints
        (task/synthesis.yaml), since MCD-DTW does not see length, and an early model that never
        stops can score a lower MCD than a later one that does."""
        return (*self.val_text.names, "loss")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.val_loss.reset()
        super().on_validation_epoch_end()

    def _log_epoch(self, stage: str, teacher_forced: Any, text: Metric, suffix: str) -> dict:
        loss = self.val_loss if stage == "val" else self.test_loss
        values = {f"{stage}/loss": loss.compute()}
        values |= {f"{stage}/{k}{suffix}": v for k, v in text.compute().items()}
        loss.reset()
        text.reset()
        return {k: float(v) for k, v in values.items()}
