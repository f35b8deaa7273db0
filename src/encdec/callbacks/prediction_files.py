"""The test stage's files in the run dir: ``predictions/test{suffix}.txt`` (corpus order, every
rank's sentences) and ``test_metrics{suffix}.json`` with the metric's signature (sacreBLEU's, or
the WER normalization) and the search's speed (and, for speech, its real-time factor). Written
by the process that decoded, so every strategy (``ddp_spawn`` included) leaves them."""

import json
from pathlib import Path

import lightning as L
import torch.distributed as dist


class PredictionFiles(L.Callback):
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        predictions: dict[int, str] = pl_module.test_predictions
        if dist.is_available() and dist.is_initialized():
            gathered: list[dict[int, str]] = [{}] * dist.get_world_size()
            dist.all_gather_object(gathered, predictions)
            predictions = {k: v for part in gathered for k, v in part.items()}
        if not trainer.is_global_zero:
            return
        suffix = pl_module.decoding.suffix
        output_dir = Path(trainer.default_root_dir)
        path = output_dir / "predictions" / f"test{suffix}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [predictions[i] for i in sorted(predictions)]
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        seconds = pl_module.test_decode_seconds  # rank 0's search time, batch by batch
        record = {
            "metrics": {
                name: float(value)
                for name, value in trainer.callback_metrics.items()
                if name.startswith("test/")
            },
            "signature": pl_module.test_text.signature,  # how the metrics were computed
            "predictions": str(path),
            "sentences": len(lines),
            "decode_seconds": seconds,
            "sentences_per_s": len(lines) / max(seconds, 1e-9),
        }
        if pl_module.test_audio_seconds:  # speech: rank 0's decoding time over its audio time
            record["audio_seconds"] = pl_module.test_audio_seconds
            record["real_time_factor"] = seconds / pl_module.test_audio_seconds
        (output_dir / f"test_metrics{suffix}.json").write_text(json.dumps(record, indent=2))
