"""Transcribe speech: ``python -m encdec.transcribe ckpt_path=... audio=a.wav`` (or
``audio=[a.wav,b.flac]``) prints one transcript per file, in order; ``manifest=m.jsonl`` prints
``<file>\\t<transcript>`` per utterance of a JSONL manifest, then WER and CER against its text
(normalized as training scored it) and the real-time factor of decoding.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, ListConfig

from encdec.utils.config import CONFIG_DIR
from encdec.utils.errors import UserError, exit_on_user_error

if TYPE_CHECKING:  # imported for the hints only: torch waits until a config is valid
    from encdec.decoding.search import DecodingConfig
    from encdec.inference.transcriber import Transcriber


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="transcribe")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    # torch and the network are imported only now, and Lightning never: a wrong config stops
    # before seconds of imports
    from encdec.inference.transcriber import Transcriber

    if (cfg.audio is None) == (cfg.manifest is None):
        raise UserError("give audio=FILE (or audio=[FILE,...]) or manifest=FILE.jsonl, not both")
    transcriber = Transcriber.from_checkpoint(cfg.ckpt_path, map_location=cfg.device)
    decoding = transcriber.network.decoding.updated(cfg.decoding)  # null: as the checkpoint says
    if cfg.audio is not None:
        paths = list(cfg.audio) if isinstance(cfg.audio, ListConfig) else [cfg.audio]
        for text in transcriber.transcribe_files(paths, decoding, cfg.batch_seconds):
            print(text)
        return
    score_manifest(transcriber, Path(cfg.manifest), decoding, cfg.batch_seconds)


def score_manifest(
    transcriber: "Transcriber", manifest: Path, decoding: "DecodingConfig", batch_seconds: float
) -> None:
    """Print each utterance's transcript, then WER, CER and the real-time factor."""
    from encdec.data.speech_readers import read_manifest
    from encdec.metrics.speech import SpeechMetrics

    utterances = read_manifest(manifest)
    if not utterances:
        raise UserError(f"'{manifest}' lists no utterance with an audio file")
    paths = [u.audio for u in utterances]
    transcripts = transcriber.transcribe_files(paths, decoding, batch_seconds)
    for path, text in zip(paths, transcripts, strict=True):
        print(f"{path}\t{text}")
    metrics = SpeechMetrics()
    metrics.update(transcripts, [u.text for u in utterances])
    scores = {name: float(value) for name, value in metrics.compute().items()}
    counted = f"{len(utterances)} utterances; {metrics.signature}"
    print(f"WER {scores['wer']:.2f} %  CER {scores['cer']:.2f} %  ({counted})")
    print(f"real-time factor {transcriber.real_time_factor:.4f}")


if __name__ == "__main__":
    main()
