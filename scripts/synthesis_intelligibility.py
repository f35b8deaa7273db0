"""Judge a speech synthesizer by a recognizer: synthesize a split's sentences, transcribe them
and the reference recordings of the same sentences with a speech recognizer, and score both.

    python scripts/synthesis_intelligibility.py --synthesizer SYN/checkpoints/best.ckpt \\
        --recognizer ASR/checkpoints/best.ckpt --split test --limit 200 --out intelligibility

The split is read from the synthesizer's own training data (its checkpoint records it). Writes
``OUT/synthesized/<n>.wav`` with ``OUT/synthesized.jsonl`` (a manifest: ``encdec.transcribe``
reads it), prints WER and CER of the recognizer on synthesized and on reference speech, their
ratio, its WER and CER on the references' own log-mel through the same Griffin-Lim
(``OUT/vocoded_reference/``: what the vocoder alone costs, the synthesizer's ceiling), and
MCD-DTW against the references, silence trimmed as in training (of the Griffin-Lim waveform,
re-analysed, and of the predicted spectrogram itself), and writes them to
``OUT/intelligibility.json``.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

import soundfile
import torch
from omegaconf import OmegaConf

from encdec.data.audio import read_audio
from encdec.inference.synthesizer import Synthesizer
from encdec.inference.transcriber import Transcriber
from encdec.metrics.mel_cepstral_distortion import MelCepstralDistortion
from encdec.metrics.speech import SpeechMetrics
from encdec.networks.loading import read_checkpoint
from encdec.utils.config import instantiate
from encdec.utils.errors import UserError, exit_on_user_error


def split_data(checkpoint_path: str, split: str) -> tuple[list, Any]:
    """The utterances of ``split`` of the synthesizer's training data, and its data module
    (which trims the references' silence as training did)."""
    data = read_checkpoint(checkpoint_path).get("data")
    if data is None:
        raise UserError(f"'{checkpoint_path}' does not record its training data")
    datamodule = instantiate(OmegaConf.create(data), "data")
    datamodule.splits["test"] = split
    return datamodule.utterances("test"), datamodule


def score(transcripts: list[str], references: list[str]) -> dict[str, float]:
    metrics = SpeechMetrics()
    metrics.update(transcripts, references)
    return {name: float(value) for name, value in metrics.compute().items()}


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthesizer", required=True, help="a speech synthesis checkpoint")
    parser.add_argument("--recognizer", required=True, help="a speech recognition checkpoint")
    parser.add_argument("--split", default="test", help="a split of the synthesizer's data")
    parser.add_argument("--limit", type=int, default=None, help="the first N utterances only")
    parser.add_argument("--batch-size", type=int, default=16, help="texts synthesized together")
    parser.add_argument("--out", default="intelligibility", help="directory for the results")
    parser.add_argument(
        "--griffin-lim-iterations", type=int, default=32, help="the vocoder's iterations"
    )
    args = parser.parse_args()

    synthesizer = Synthesizer.from_checkpoint(
        args.synthesizer, griffin_lim_iterations=args.griffin_lim_iterations
    )
    split_utterances, datamodule = split_data(args.synthesizer, args.split)
    split_utterances = split_utterances[: args.limit]
    _, problems = synthesizer.read([u.text for u in split_utterances])
    utterances, refused = [], []  # refused: e.g. a character training never saw
    for utterance, problem in zip(split_utterances, problems, strict=True):
        if problem:
            refused.append(f"{utterance.name}: {problem}")
        else:
            utterances.append(utterance)
    if refused:
        print(f"left out {len(refused)} sentences the synthesizer cannot say (first: {refused[0]})")
    if not utterances:
        raise UserError(f"no sentence of '{args.split}' left to synthesize")
    texts = [u.text for u in utterances]
    out = Path(args.out)
    for folder in ("synthesized", "vocoded_reference"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    paths = [out / "synthesized" / f"{n}.wav" for n in range(len(texts))]
    vocoded_paths = [out / "vocoded_reference" / f"{n}.wav" for n in range(len(texts))]
    vocoded, predicted = MelCepstralDistortion(), MelCepstralDistortion()
    network, started, stopped = synthesizer.network, time.perf_counter(), 0
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), args.batch_size):
        rows = order[start : start + args.batch_size]
        results = synthesizer.synthesize([texts[i] for i in rows])
        for row, result in zip(rows, results, strict=True):
            wave = synthesizer.vocoder(result.log_mel)
            soundfile.write(paths[row], wave.numpy(), synthesizer.sample_rate, subtype="PCM_16")
            recorded = read_audio(utterances[row].audio, synthesizer.sample_rate)[0]
            reference = datamodule.trimmed(recorded)  # as training saw it
            every = torch.ones(1, len(reference), dtype=torch.bool)
            reference_mel = network.log_mel(reference[None], every)[0][0]
            analysed = synthesizer.vocoder(reference_mel)  # the vocoder's own loss
            soundfile.write(
                vocoded_paths[row], analysed.numpy(), synthesizer.sample_rate, subtype="PCM_16"
            )
            ours_mel = network.log_mel(wave[None], torch.ones(1, len(wave), dtype=torch.bool))[0]
            vocoded.update([ours_mel[0]], [reference_mel])
            predicted.update([result.log_mel], [reference_mel])
            stopped += result.stopped
    synthesis_seconds = time.perf_counter() - started
    manifest = out / "synthesized.jsonl"
    manifest.write_text("".join(
        json.dumps({"audio_filepath": f"synthesized/{p.name}", "text": t}) + "\n"
        for p, t in zip(paths, texts, strict=True)
    ))  # fmt: skip

    transcriber = Transcriber.from_checkpoint(args.recognizer)
    on_synthesized = score(transcriber.transcribe_files(paths), texts)
    on_reference = score(transcriber.transcribe_files([u.audio for u in utterances]), texts)
    on_vocoded_reference = score(transcriber.transcribe_files(vocoded_paths), texts)
    result = {
        "utterances": len(texts),
        "left_out": len(refused),
        "split": args.split,
        "synthesizer": args.synthesizer,
        "recognizer": args.recognizer,
        "synthesized": on_synthesized,
        "reference": on_reference,
        "vocoded_reference": on_vocoded_reference,
        "griffin_lim_iterations": args.griffin_lim_iterations,
        "cer_ratio": on_synthesized["cer"] / max(on_reference["cer"], 1e-9),
        "mcd_vocoded": float(vocoded.compute()["mcd"]),
        "mcd_predicted": float(predicted.compute()["mcd"]),
        "length_ratio": float(predicted.compute()["length_ratio"]),
        "stopped_by_stop_token": stopped / len(texts),
        "synthesis_seconds": synthesis_seconds,
        "signature": f"{SpeechMetrics.signature}; {MelCepstralDistortion.signature}",
    }
    (out / "intelligibility.json").write_text(json.dumps(result, indent=2))
    print(f"{len(texts)} utterances of '{args.split}'")
    for name in ("synthesized", "reference", "vocoded_reference"):
        print(f"{name:>17}: WER {result[name]['wer']:.2f} %  CER {result[name]['cer']:.2f} %")
    print(f"CER ratio (synthesized / reference): {result['cer_ratio']:.2f}")
    print(f"MCD-DTW: {result['mcd_vocoded']:.2f} dB (Griffin-Lim waveform), "
          f"{result['mcd_predicted']:.2f} dB (predicted spectrogram)")  # fmt: skip
    print(f"ended by the stop token: {100 * result['stopped_by_stop_token']:.1f} %")
    print(f"written: {out / 'intelligibility.json'}, {manifest}")


if __name__ == "__main__":
    main()
