"""A multi-speaker English speech corpus built offline by Debian's speech tools: the default
data of speech recognition, so that a user and CI need no network.

Each **speaker** is a synthesizer engine and voice with its own settings: ``espeak-ng`` (seven
English accents x voice variants, words per minute, pitch) or ``flite`` (its voices, duration
stretch, mean pitch), then varied by ``sox`` (speed perturbation, reverberation, the 300-3,400
Hz telephone band at 8 kHz) and by white noise at a drawn signal-to-noise ratio. The speaker
table is drawn from a seed, so a seed always makes the same corpus.

**Splits hold out whole speakers**: train, val and test speakers are disjoint, and one whole
engine is held out for a second test set (``test_unseen_engine``), so the numbers say how well
a model generalises to voices and to a synthesizer it never heard. Each split's sentences come
from its own text list (the sentences of a test split are never trained on, where the text
source has enough of them).

The corpus is a directory: ``wav/<speaker>/<n>.wav`` (16-bit mono), a JSONL manifest per split
(``{"audio_filepath", "text", "duration", "speaker"}``, paths relative to the manifest: NeMo's
convention) and ``speakers.tsv``, built once per content key (``cached_directory``) in
parallel processes with a progress bar.
"""

import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from encdec.data.cached_directory import cached_directory
from encdec.data.token_cache import digest_values
from encdec.utils.errors import UserError

FORMAT = 1  # bumped when the corpus's layout or synthesis changes
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029")  # fmt: skip
ESPEAK_VARIANTS = (  # the human-sounding ones (no whisper, robot or croak)
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
    "klatt3", "adam", "Andy", "Annie", "aunty", "belinda", "david", "ed", "john", "linda", "max",
    "Michael", "paul", "quincy", "rob", "steph", "travis", "victor", "norbert", "shelby",
    "grandma", "grandpa",
)  # fmt: skip
FLITE_VOICES = ("slt", "rms", "awb", "kal16")
ENGINE_PROGRAMS = {"espeak-ng": "espeak-ng", "flite": "flite"}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an engine's voice with fixed settings, then fixed effects."""

    name: str
    engine: str  # espeak-ng | flite
    voice: str  # espeak-ng: "<accent>+<variant>"; flite: a voice name
    rate: float  # espeak-ng: words per minute; flite: duration stretch (>1 slower)
    pitch: float  # espeak-ng: 0-99; flite: mean F0 in Hz
    speed: float  # sox speed factor (tempo and pitch together)
    reverb: int  # sox reverberance 0-100; 0 = dry
    telephone: bool  # 300-3,400 Hz band at 8 kHz
    snr_db: float | None  # white noise at this signal-to-noise ratio; None = clean


def draw_speaker(name: str, engine: str, rng: random.Random) -> Speaker:
    """A speaker of ``engine`` with settings drawn from ``rng``."""
    if engine == "espeak-ng":
        voice = f"{rng.choice(ESPEAK_ACCENTS)}+{rng.choice(ESPEAK_VARIANTS)}"
        rate, pitch = rng.randint(130, 200), rng.randint(25, 75)
    elif engine == "flite":
        voice = rng.choice(FLITE_VOICES)
        rate, pitch = round(rng.uniform(0.85, 1.25), 2), rng.randint(90, 200)
    else:
        raise UserError(f"unknown speech synthesizer '{engine}' (espeak-ng or flite)")
    return Speaker(
        name=name,
        engine=engine,
        voice=voice,
        rate=rate,
        pitch=pitch,
        speed=round(rng.choice((0.9, 1.0, 1.0, 1.1)), 2),
        reverb=rng.choice((0, 0, 0, 30, 60)),
        telephone=rng.random() < 0.15,
        snr_db=rng.choice((None, None, 30.0, 20.0, 15.0)),
    )


def speaker_table(
    speakers_per_split: dict[str, int], held_out_engine: str, seed: int
) -> dict[str, list[Speaker]]:
    """Disjoint speakers per split of the seen engine(s), and ``test_unseen_engine``: speakers
    of ``held_out_engine`` only, which no other split has."""
    seen = [engine for engine in ENGINE_PROGRAMS if engine != held_out_engine]
    rng = random.Random(seed)
    table: dict[str, list[Speaker]] = {}
    for split, count in speakers_per_split.items():
        engines = [held_out_engine] if split == "test_unseen_engine" else seen
        table[split] = [
            draw_speaker(f"{split}-{i:03d}", engines[i % len(engines)], rng) for i in range(count)
        ]
    return table


def synthesis_commands(
    speaker: Speaker, text: str, raw: Path, out: Path, rate: int
) -> list[list[str]]:
    """The engine's command writing ``raw``, then sox's from ``raw`` to ``out`` (16-bit mono
    at ``rate`` Hz) with the speaker's effects."""
    if speaker.engine == "espeak-ng":
        settings = [
            "-v",
            speaker.voice,
            "-s",
            str(int(speaker.rate)),
            "-p",
            str(int(speaker.pitch)),
        ]
        engine = ["espeak-ng", "-w", str(raw), *settings, "--", text]
    else:
        settings = ["-voice", speaker.voice, "--setf", f"duration_stretch={speaker.rate}",
                    "--setf", f"int_f0_target_mean={speaker.pitch}"]  # fmt: skip
        engine = ["flite", *settings, "-t", text, "-o", str(raw)]
    effects = ["speed", str(speaker.speed)] if speaker.speed != 1.0 else []
    if speaker.reverb:
        effects += ["reverb", str(speaker.reverb)]
    if speaker.telephone:
        effects += ["sinc", "300-3400", "rate", "8000"]
    # -R: repeatable (seeded) effects; -D: no random dither; so a seed makes the same bytes
    sox = ["sox", "-R", "-D", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out), *effects]
    return [engine, sox]


def synthesize(job: tuple[Speaker, str, str, int, int]) -> float:
    """Synthesize one utterance to a WAV file; its duration in seconds."""
    speaker, text, out, rate, noise_seed = job
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "raw.wav"
        for command in synthesis_commands(speaker, text, raw, out_path, rate):
            completed = subprocess.run(command, capture_output=True, text=True)
            if completed.returncode != 0:
                message = (completed.stderr.strip().splitlines() or ["no message"])[-1]
                raise UserError(f"{command[0]} failed on {text!r} ({speaker.name}): {message}")
    audio, _ = soundfile.read(out_path, dtype="float32")
    if speaker.snr_db is not None:
        noise = np.random.default_rng(noise_seed).standard_normal(audio.shape, np.float32)
        signal_power = float(np.mean(audio**2)) or 1e-8
        audio = audio + noise * np.sqrt(signal_power / 10 ** (speaker.snr_db / 10))
        peak = float(np.max(np.abs(audio)))
        soundfile.write(out_path, audio / max(peak, 1.0), rate, subtype="PCM_16")
    return len(audio) / rate


def check_programs(engines: Sequence[str]) -> None:
    """A clear error when a synthesizer or sox is not installed."""
    for program in [*(ENGINE_PROGRAMS[e] for e in engines), "sox"]:
        if shutil.which(program) is None:
            raise UserError(
                f"'{program}' is not installed: the speech corpus is synthesized with Debian's "
                "espeak-ng, flite and sox (README: set-up)"
            )


Job = tuple[Speaker, str, str, int, int]  # speaker, text, output path, sample rate, noise seed


def build_speech_corpus(
    cache_dir: Path,
    texts: dict[str, list[str]],
    speakers: dict[str, list[Speaker]],
    utterances_per_speaker: int,
    sample_rate: int = 16000,
    seed: int = 0,
    processes: int | None = None,
) -> Path:
    """The corpus directory for these texts and speakers, synthesized on a miss. Each speaker
    of a split says ``utterances_per_speaker`` sentences drawn (seeded) from that split's
    texts (``test_unseen_engine`` uses the test texts)."""
    key = digest_values(
        FORMAT, texts, {k: [asdict(s) for s in v] for k, v in speakers.items()},
        utterances_per_speaker, sample_rate, seed, tool_versions(),
    )[:16]  # fmt: skip

    def build(directory: Path) -> dict[str, int]:
        check_programs(sorted({s.engine for group in speakers.values() for s in group}))
        jobs, manifests = plan(
            directory, texts, speakers, utterances_per_speaker, sample_rate, seed
        )
        with get_context("fork").Pool(processes or os.cpu_count() or 1) as pool:
            synthesized = pool.imap(synthesize, jobs, chunksize=8)
            durations = list(tqdm(synthesized, "synthesizing speech", len(jobs), unit=" utt"))
        for split, rows in manifests.items():
            with open(directory / f"{split}.jsonl", "w") as manifest:
                for row in rows:
                    row["duration"] = round(durations[row.pop("job")], 3)
                    manifest.write(json.dumps(row) + "\n")
        write_speaker_table(directory / "speakers.tsv", speakers)
        return {"utterances": len(jobs), "format": FORMAT}

    return cached_directory(cache_dir, f"speech-v{FORMAT}-{key}", build)


def plan(
    directory: Path,
    texts: dict[str, list[str]],
    speakers: dict[str, list[Speaker]],
    utterances_per_speaker: int,
    sample_rate: int,
    seed: int,
) -> tuple[list[Job], dict[str, list[dict]]]:
    """The synthesis jobs, and each split's manifest rows (``job``: the row's job)."""
    rng = random.Random(seed)
    jobs: list[Job] = []
    manifests: dict[str, list[dict]] = {}
    for split, group in speakers.items():
        sentences = texts["test" if split == "test_unseen_engine" else split]
        if not sentences:
            raise UserError(f"the speech corpus has no sentences for its {split} split")
        manifests[split] = []
        for speaker in group:
            said = rng.sample(sentences, min(utterances_per_speaker, len(sentences)))
            for n, text in enumerate(said):
                relative = f"wav/{speaker.name}/{n:04d}.wav"
                row = {"audio_filepath": relative, "text": text, "speaker": speaker.name}
                manifests[split].append({**row, "job": len(jobs)})
                jobs.append(
                    (speaker, text, str(directory / relative), sample_rate, rng.getrandbits(32))
                )
    return jobs, manifests


def write_speaker_table(path: Path, speakers: dict[str, list[Speaker]]) -> None:
    """Which voice settings each speaker is: one TSV row per speaker, with its split."""
    names = [f.name for f in fields(Speaker)]
    lines = ["\t".join(["split", *names])]
    for split, group in speakers.items():
        lines += ["\t".join([split, *(str(getattr(s, n)) for n in names)]) for s in group]
    path.write_text("\n".join(lines) + "\n")


def tool_versions() -> list[str]:
    """The installed synthesizers' and sox's version lines (part of the corpus's key)."""
    versions = []
    for command in (["espeak-ng", "--version"], ["flite", "--version"], ["sox", "--version"]):
        if shutil.which(command[0]):
            output = subprocess.run(command, capture_output=True, text=True).stdout
            versions.append(" ".join(output.split()[:6]))
    return versions
