"""Speak text: ``python -m encdec.speak ckpt_path=... text="A dog runs." out=dog.wav`` writes
the synthesized speech (16-bit WAV at the model's sample rate); ``text=[...]`` with
``out=DIR`` writes ``DIR/0.wav``, ``DIR/1.wav``, ... Prints each file, its duration and whether
the stop token ended it (or the frame limit did).
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig

from encdec.utils.config import CONFIG_DIR
from encdec.utils.errors import UserError, exit_on_user_error


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="speak")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # torch and the network are imported only now, and Lightning never
    import soundfile

    from encdec.inference.synthesizer import Synthesizer

    if cfg.text is None:
        raise UserError('give text="..." (or text=[...]) to speak')
    texts = [str(t) for t in cfg.text] if isinstance(cfg.text, ListConfig) else [str(cfg.text)]
    out = Path(cfg.out)
    if len(texts) > 1:
        if out.suffix:
            raise UserError(f"out={out}: several texts are written into a directory, not a file")
        paths = [out / f"{n}.wav" for n in range(len(texts))]
    else:
        paths = [out if out.suffix else out / "0.wav"]
    synthesizer = Synthesizer.from_checkpoint(cfg.ckpt_path, cfg.device, cfg.griffin_lim_iterations)
    results = synthesizer.synthesize(texts, cfg.seed)
    for path, result in zip(paths, results, strict=True):
        wave = synthesizer.vocoder(result.log_mel).cpu().numpy()
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, wave, synthesizer.sample_rate, subtype="PCM_16")
        ending = "stop token" if result.stopped else "frame limit (no stop token)"
        print(f"{path}\t{len(wave) / synthesizer.sample_rate:.2f} s\t{ending}")


if __name__ == "__main__":
    main()
