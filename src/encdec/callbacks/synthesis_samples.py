"""Speech synthesis's samples at each validation (of a ``TextToSpeech`` network; other networks
get ``ValidationSamples``' text samples, and this callback does nothing for them): the first
``num_samples`` val sentences are synthesized greedily, turned into sound by Griffin-Lim, and
written into the run dir as ``samples/step{S}_{i}.wav`` (with the reference recording once,
``samples/reference_{i}.wav``), ``spectrograms/step{S}_{i}.png`` (predicted over reference
log-mel) and ``alignment/step{S}_{i}.png`` (the decoder's attention: text characters x steps).
With a W&B logger: the table ``val/samples`` (text, reference audio, synthesized audio) and the
images ``val/spectrograms`` and ``val/alignment``. Rank 0 only."""

from pathlib import Path
from typing import Any

import lightning as L
import soundfile
import torch
from lightning.pytorch.trainer.states import TrainerFn

from encdec.callbacks.samples import FirstValidationRows
from encdec.data.tokenization import token_text
from encdec.modules.vocoder import GriffinLim
from encdec.networks.text_to_speech import TextToSpeech
from encdec.utils.loggers import find_wandb_logger
from encdec.utils.plots import pad_to_same_size, save_attention_heatmap, save_spectrograms


class SynthesisSamples(FirstValidationRows):
    def __init__(self, num_samples: int = 4, griffin_lim_iterations: int = 32) -> None:
        super().__init__(num_samples)
        self.iterations = griffin_lim_iterations

    def draws(self, network: Any) -> bool:
        return isinstance(network, TextToSpeech)

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING
        if trainer.sanity_checking or not fitting or self.examples is None:
            return
        net, examples = pl_module.net, self.examples
        vocoder = GriffinLim(net.mel, self.iterations).to(pl_module.device)
        synthesized = net.synthesize(examples["source"], examples["source_mask"], True)
        reference_mels, mask = net.log_mel(examples["audio"], examples["audio_mask"])
        run_dir, step = Path(trainer.default_root_dir), trainer.global_step
        rows, spectrograms, alignments = [], [], []
        for i, result in enumerate(synthesized):
            reference_wav = run_dir / "samples" / f"reference_{i}.wav"
            if not reference_wav.is_file():  # the same recordings at every validation
                reference_wav.parent.mkdir(parents=True, exist_ok=True)
                wave = examples["audio"][i][examples["audio_mask"][i]].float().cpu()
                soundfile.write(reference_wav, wave.numpy(), net.sample_rate)
            wav = run_dir / "samples" / f"step{step}_{i}.wav"
            soundfile.write(wav, vocoder(result.log_mel).cpu().numpy(), net.sample_rate)
            rows.append([examples["references"][i], reference_wav, wav])
            reference = reference_mels[i][mask[i]]
            spectrograms.append(save_spectrograms(
                {"synthesized": result.log_mel.T.cpu().numpy(),
                 "reference": reference.T.float().cpu().numpy()},
                run_dir / "spectrograms" / f"step{step}_{i}.png",
                f"step {step}: {examples['references'][i]}",
            ))  # fmt: skip
            if result.alignment is not None:
                ids = examples["source"][i][examples["source_mask"][i]].tolist()
                labels = [token_text(net.tokenizer.source, t) for t in ids]
                alignments.append(save_attention_heatmap(
                    result.alignment.T.float().cpu().numpy(),
                    None, labels, run_dir / "alignment" / f"step{step}_{i}.png",
                    f"step {step} example {i}: text symbols x decoder steps",
                    ("text symbol", f"decoder step ({net.frames_per_step} frames each)"),
                ))  # fmt: skip
        pad_to_same_size(spectrograms)
        pad_to_same_size(alignments)
        wandb_logger = find_wandb_logger(trainer.loggers)
        if wandb_logger is not None:
            import wandb

            data = [[text, wandb.Audio(str(ref)), wandb.Audio(str(ours))]
                    for text, ref, ours in rows]  # fmt: skip
            wandb_logger.log_table(
                "val/samples", columns=["text", "reference", "synthesized"], data=data, step=step
            )
            for key, paths in (("val/spectrograms", spectrograms), ("val/alignment", alignments)):
                if paths:
                    wandb_logger.log_image(key, [str(p) for p in paths], step)
