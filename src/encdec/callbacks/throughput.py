"""Training throughput: target tokens/s and source+target tokens/s, logged and summarised
(speech recognition: target tokens/s and 10-ms input frames/s, ``train/frames_per_s``; speech
synthesis: its target's 10-ms frames count as target tokens). The module says what a batch
holds (``batch_units``).

Only time inside training batches counts (forward, backward, optimizer step), so validation
does not dilute the figure; the summary also records the whole fit's wall time. Under DDP the
figures are the whole job's: tokens summed over ranks, over the slowest rank's time.
"""

import json
import resource
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch


class ThroughputMonitor(L.Callback):
    def __init__(self, log_every_n_steps: int = 50) -> None:
        self.log_every_n_steps = log_every_n_steps
        self.fit_start = self.batch_start = 0.0
        self.train_seconds = 0.0  # inside training batches, whole fit
        self.window_seconds = 0.0  # inside training batches, since the last log
        self.window_tokens: torch.Tensor | None = None  # (target, source) on device: no sync
        self.total_tokens = torch.zeros(2, dtype=torch.long)
        self.parameters = 0
        self.audio_source = False  # speech recognition: the source is counted in frames

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_start = time.perf_counter()
        self.parameters = sum(p.numel() for p in pl_module.parameters())
        self.audio_source = pl_module.net.frontend is not None

    def on_train_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: dict[str, Any],
        batch_idx: int,
    ) -> None:
        self.batch_start = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: dict[str, Any] | None,
        batch_idx: int,
    ) -> None:
        if batch is None:  # a captioning batch whose images all failed to decode: skipped
            return
        tokens = pl_module.batch_units(batch)  # (target, source)
        self.window_tokens = tokens if self.window_tokens is None else self.window_tokens + tokens
        self.window_seconds += time.perf_counter() - self.batch_start
        if (batch_idx + 1) % self.log_every_n_steps == 0:
            self._flush(pl_module)

    def _close_window(self, pl_module: L.LightningModule) -> tuple[int, int, float] | None:
        """Add the window to the totals: (target tokens, source tokens, seconds) or None."""
        if self.window_tokens is None:
            return None
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        target, source = self.window_tokens.cpu().tolist()
        seconds = self.window_seconds
        self.total_tokens += torch.tensor([target, source])
        self.train_seconds += seconds
        self.window_tokens, self.window_seconds = None, 0.0
        return target, source, max(seconds, 1e-9)

    def _flush(self, pl_module: L.LightningModule) -> None:
        if window := self._close_window(pl_module):
            target, source, seconds = window
            pl_module.log_dict(  # each rank's rate, summed over ranks
                {"train/target_tokens_per_s": target / seconds}
                | self._source_rate(target, source, seconds, "train/"),
                sync_dist=True,
                reduce_fx="sum",
            )

    def _job_totals(self, trainer: L.Trainer) -> tuple[int, int, float]:
        """(target tokens, source tokens) summed over ranks, and the slowest rank's seconds."""
        tokens = self.total_tokens.to(trainer.strategy.root_device)
        seconds = torch.tensor([self.train_seconds], dtype=torch.float64, device=tokens.device)
        if trainer.world_size > 1:
            tokens = trainer.strategy.reduce(tokens, reduce_op="sum")
            seconds = trainer.strategy.reduce(seconds, reduce_op="max")
        target, source = tokens.tolist()
        return target, source, seconds.item()

    def summary(self, trainer: L.Trainer) -> dict[str, float]:
        target, source, seconds = self._job_totals(trainer)
        seconds = max(seconds, 1e-9)
        memory = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            memory["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return {
            "parameters": self.parameters,
            "world_size": trainer.world_size,
            **memory,  # of rank 0
            "fit_wall_seconds": time.perf_counter() - self.fit_start,
            "train_seconds": seconds,
            "target_tokens": target,
            "target_tokens_per_s": target / seconds,
            **self._source_rate(target, source, seconds),
        }

    def _source_rate(self, target: int, source: int, seconds: float, prefix: str = "") -> dict:
        """Source + target tokens/s, or for speech input frames/s."""
        if self.audio_source:
            return {f"{prefix}frames_per_s": source / seconds}
        return {f"{prefix}tokens_per_s": (target + source) / seconds}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_window(pl_module)  # the last partial window
        summary = self.summary(trainer)  # every rank: the totals are reduced over ranks
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / "train_summary.json"
            path.write_text(json.dumps(summary, indent=2))
