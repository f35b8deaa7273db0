"""Sample outputs at each validation: source, reference and hypothesis of a fixed set of val
examples, and attention heatmaps of the first few.

The first ``num_samples`` examples of the first val batch are kept; after every validation of a
fit they are decoded greedily (as validation decodes) and written into the run dir as
``samples/epoch{E}_step{S}.md`` (images of a captioning batch once, as ``samples/images/{i}.png``)
and, with a W&B logger, as the table ``val/samples`` (captions: the image instead of a source
text; speech: the audio, saved once as ``samples/audio/{i}.wav``). Models whose decoder's
``step`` returns attention (attention RNNs, Transformers) also get
``attention/epoch{E}_step{S}_{i}.png`` for the first ``attention_maps`` examples, logged to W&B
as ``val/attention`` (speech: output tokens x encoder frames under the utterance's log-mel
spectrogram); the fixed-context RNN decoder has no attention and gets none. With a
TensorBoard logger the samples are the text ``val/samples`` and the heatmaps images under
``val/attention/``. The CSV logger gets nothing: the files in the run dir are there for every
run. Rank 0 only. A speech synthesizer writes no text: ``SynthesisSamples`` writes its samples.
"""

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import soundfile
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.wandb import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from PIL import Image

from encdec.data.images import image_array
from encdec.data.tokenization import EOS_ID, token_text
from encdec.decoding.search import Hypothesis
from encdec.networks.text_to_speech import TextToSpeech
from encdec.training.seq2seq_module import Seq2SeqModule
from encdec.utils.errors import UserError
from encdec.utils.loggers import find_wandb_logger
from encdec.utils.plots import (
    pad_to_same_size,
    save_attention_heatmap,
    save_attention_over_spectrogram,
    save_attention_overlay,
)


def first_rows(batch: dict[str, Any], count: int) -> dict[str, Any]:
    """The first ``count`` rows of every tensor and list of a batch (tensors copied, so the
    rest of the batch can be freed)."""
    return {
        key: value[:count].clone() if isinstance(value, torch.Tensor) else value[:count]
        for key, value in batch.items()
        if isinstance(value, torch.Tensor | list)
    }


def markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def is_images(batch: dict[str, Any]) -> bool:
    """Whether a batch's source is images (B, 3, H, W), not token ids (B, S)."""
    return batch["source"].dim() == 4


def is_audio(batch: dict[str, Any]) -> bool:
    """Whether a batch's source is waveforms (B, N) (float), not token ids (B, S)."""
    return batch["source"].dim() == 2 and batch["source"].is_floating_point()


class FirstValidationRows(L.Callback):
    """Keeps the first ``num_samples`` rows of the first val batch (rank 0) where ``draws``
    says the callback has something to draw for the module's network."""

    def __init__(self, num_samples: int) -> None:
        if num_samples < 1:
            raise UserError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.examples: dict[str, Any] | None = None  # first rows of the first val batch

    def draws(self, network: Any) -> bool:
        return True

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: dict[str, Any] | None,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        first = self.examples is None and batch is not None and trainer.is_global_zero
        if first and self.draws(getattr(pl_module, "net", None)):
            self.examples = first_rows(batch, self.num_samples)


class ValidationSamples(FirstValidationRows):
    def __init__(self, num_samples: int = 8, attention_maps: int = 2) -> None:
        super().__init__(num_samples)
        if not 0 <= attention_maps <= num_samples:
            raise UserError(f"attention_maps must be in 0..num_samples, got {attention_maps}")
        self.attention_maps = attention_maps

    def draws(self, network: Any) -> bool:
        return not isinstance(network, TextToSpeech)  # a synthesizer writes no text

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: Seq2SeqModule) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING  # not trainer.validate() after the fit
        if trainer.sanity_checking or not fitting or self.examples is None:
            return  # self.examples is None on every rank but 0, too
        hypotheses = self.decode(pl_module, self.examples)
        epoch, step = trainer.current_epoch, trainer.global_step
        name = f"epoch{epoch}_step{step}"
        run_dir = Path(trainer.default_root_dir)
        rows = self.sample_rows(pl_module, hypotheses, run_dir / "samples")
        markdown = self.markdown(rows, f"Validation samples: epoch {epoch}, step {step}")
        (run_dir / "samples" / f"{name}.md").write_text(markdown, encoding="utf-8")
        plots = self.plot_attention(pl_module, hypotheses, run_dir / "attention", name)
        wandb_logger = find_wandb_logger(trainer.loggers)
        if wandb_logger is not None:
            self.log_to_wandb(wandb_logger, rows, plots, step)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                self.log_to_tensorboard(logger, markdown, plots, step)

    @staticmethod
    def log_to_tensorboard(
        logger: TensorBoardLogger, markdown: str, plots: list[Path], step: int
    ) -> None:
        """The samples as the text ``val/samples`` (TensorBoard renders markdown) and each
        heatmap as the image ``val/attention/<name>``."""
        logger.experiment.add_text("val/samples", markdown, step)
        for path in plots:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))  # (H, W, 3)
            logger.experiment.add_image(
                f"val/attention/{path.stem}", pixels, step, dataformats="HWC"
            )

    @staticmethod
    def log_to_wandb(
        wandb_logger: WandbLogger, rows: list[dict[str, Any]], plots: list[Path], step: int
    ) -> None:
        """The table ``val/samples`` (images as ``wandb.Image``) and the heatmaps
        ``val/attention``."""
        import wandb

        data = [
            [
                wandb.Image(v) if isinstance(v, np.ndarray)
                else wandb.Audio(str(v)) if isinstance(v, Path)
                else v
                for v in row.values()
            ]
            for row in rows
        ]  # fmt: skip
        wandb_logger.log_table("val/samples", columns=list(rows[0]), data=data, step=step)
        if plots:
            captions = [path.stem for path in plots]
            wandb_logger.log_image("val/attention", [str(p) for p in plots], step, caption=captions)

    @torch.no_grad()
    def decode(self, pl_module: Seq2SeqModule, examples: dict[str, Any]) -> list[Hypothesis]:
        """Greedy hypotheses, as validation decodes, with attention where the model has it."""
        return pl_module.net.greedy_with_attention(
            examples["source"], examples["source_mask"], self.attention_maps > 0
        )

    def sample_rows(
        self, pl_module: Seq2SeqModule, hypotheses: list[Hypothesis], samples_dir: Path
    ) -> list[dict[str, Any]]:
        """One row per example: ``source`` text, ``image`` (uint8 (H, W, 3)) or ``audio`` (the
        path of its WAV), ``reference`` (or ``references``, joined by " | "), ``hypothesis``.
        Images and audio are saved once into ``samples_dir/images`` and ``samples_dir/audio``."""
        examples = self.examples
        references = examples["references"]
        samples_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for i, hypothesis in enumerate(hypotheses):
            text = pl_module.tokenizer.decode_target(hypothesis.tokens)
            if is_images(examples):
                image = image_array(examples["source"][i], pl_module.image_settings)
                path = samples_dir / "images" / f"{i}.png"
                if not path.is_file():  # the same images at every validation
                    path.parent.mkdir(exist_ok=True)
                    Image.fromarray(image).save(path)
                row = {"image": image, "references": " | ".join(references[i])}
            elif is_audio(examples):
                path = samples_dir / "audio" / f"{i}.wav"
                if not path.is_file():
                    path.parent.mkdir(exist_ok=True)
                    wave = examples["source"][i][examples["source_mask"][i]].float().cpu()
                    soundfile.write(path, wave.numpy(), pl_module.net.frontend.sample_rate)
                row = {"audio": path, "reference": references[i]}
            else:
                row = {"source": examples["source_text"][i], "reference": references[i]}
            rows.append({**row, "hypothesis": text})
        return rows

    @staticmethod
    def markdown(rows: list[dict[str, Any]], title: str) -> str:
        columns = list(rows[0])
        lines = [f"# {title}", "", "| # | " + " | ".join(columns) + " |"]
        lines.append("|---" * (len(columns) + 1) + "|")
        for i, row in enumerate(rows):
            cells = [
                f"![image {i}](images/{i}.png)" if isinstance(v, np.ndarray)
                else f"[audio {i}](audio/{i}.wav)" if isinstance(v, Path)
                else markdown_cell(v)
                for v in row.values()
            ]  # fmt: skip
            lines.append(f"| {i} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def plot_attention(
        self, pl_module: Seq2SeqModule, hypotheses: list[Hypothesis], out_dir: Path, name: str
    ) -> list[Path]:
        """Heatmaps of the first ``attention_maps`` examples' attention (none without it):
        output tokens (and EOS) x source tokens (and EOS), or x image grid cells."""
        tokenizer, examples = pl_module.tokenizer, self.examples
        paths = []
        for i, hypothesis in enumerate(hypotheses[: self.attention_maps]):
            if hypothesis.attention is None:
                continue
            weights = hypothesis.attention.float().cpu().numpy()  # (T, S): S padded, or N cells
            source_labels = None
            if is_audio(examples):  # encoder frames under the utterance's spectrogram
                real = examples["source_mask"][i]
                spectrogram, mel_mask = pl_module.net.frontend.log_mel(
                    examples["source"][i][real][None], real[real][None]
                )  # (1, T, M), (1, T)
                frames = int(pl_module.net.frontend.subsampling.lengths(mel_mask.sum(1)))
                target_ids = hypothesis.tokens + ([EOS_ID] if hypothesis.finished else [])
                labels = [token_text(tokenizer.target, t) for t in target_ids]
                path = out_dir / f"{name}_{i}.png"
                paths.append(save_attention_over_spectrogram(
                    spectrogram[0].T.float().cpu().numpy(), weights[:, :frames], labels, path,
                    f"{name} example {i}",
                ))  # fmt: skip
                continue
            if not is_images(examples):  # text: its own tokens, without the batch's padding
                ids = examples["source"][i][examples["source_mask"][i]].tolist()
                source_labels = [token_text(tokenizer.source, t) for t in ids]
                weights = weights[:, : len(ids)]
            target_ids = hypothesis.tokens + ([EOS_ID] if hypothesis.finished else [])
            target_labels = [token_text(tokenizer.target, t) for t in target_ids]
            title = f"{name} example {i}"
            path = out_dir / f"{name}_{i}.png"
            if is_images(examples):  # each word's attention laid over the image
                image = image_array(examples["source"][i], pl_module.image_settings)
                paths.append(save_attention_overlay(image, weights, target_labels, path, title))
            else:
                paths.append(
                    save_attention_heatmap(weights, source_labels, target_labels, path, title)
                )
        pad_to_same_size(paths)  # logged together to W&B, under one key
        return paths
