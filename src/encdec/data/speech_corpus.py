"""A multi-speaker English speech corpus built offline by Debian's speech tools: the default
data of speech recognition, so that a user and CI need no network.

Each **speaker** is a synthesizer engine and voice with its own settings: ``espeak-ng`` (seven
English accents x voice variants, words per minute, pitch: formant synthesis), ``festival``
(the ``ked`` diphone voice, recorded speech concatenated; duration stretch, mean pitch) or
``flite`` (its voices, duration stretch, mean pitch), then varied by ``sox`` (speed
perturbation, reverberation, the 300-3,400 Hz telephone band at 8 kHz) and by white noise at a
drawn signal-to-noise ratio. The speaker table is drawn from a seed, so a seed always makes the
same corpus. Every engine but the held-out one speaks in train, val and test, in turn.

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

FORMAT = 3  # bumped when the corpus's layout or synthesis changes (3: a generator per split)
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029")  # fmt: skip
ESPEAK_VARIANTS = (  # the human-sounding ones (no whisper, robot or croak)
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
    "klatt3", "adam", "Andy", "Annie", "aunty", "belinda", "david", "ed", "john", "linda", "max",
    "Michael", "paul", "quincy", "rob", "steph", "travis", "victor", "norbert", "shelby",
    "grandma", "grandpa",
)  # fmt: skip
FLITE_VOICES = ("slt", "rms", "awb", "kal16")
# festival's English voices other than ked share their recordings with flite's (kal, slt), so a
# held-out flite would not be unheard; Debian: festvox-kdlpc16k
FESTIVAL_VOICES = ("ked_diphone",)
NAMED_VOICES = {"festival": FESTIVAL_VOICES, "flite": FLITE_VOICES}  # duration stretch + F0 mean
ENGINE_PROGRAMS = {"espeak-ng": "espeak-ng", "festival": "festival", "flite": "flite"}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an engine's voice with fixed settings, then fixed effects."""

    name: str
    engine: str  # espeak-ng | festival | flite
    voice: str  # espeak-ng: "<accent>+<variant>"; festival, flite: a voice name
    rate: float  # espeak-ng: words per minute; festival, flite: duration stretch (>1 slower)
    pitch: float  # espeak-ng: 0-99; festival, flite: mean F0 in Hz
    speed: float  # sox speed factor (tempo and pitch together)
    reverb: int  # sox reverberance 0-100; 0 = dry
    telephone: bool  # 300-3,400 Hz band at 8 kHz
    snr_db: float | None  # white noise at this signal-to-noise ratio; None = clean


def draw_speaker(name: str, engine: str, rng: random.Random) -> Speaker:
    """A speaker of ``engine`` with settings drawn from ``rng``."""
    if engine == "espeak-ng":
        voice = f"{rng.choice(ESPEAK_ACCENTS)}+{rng.choice(ESPEAK_VARIANTS)}"
        rate, pitch = rng.randint(130, 200), rng.randint(25, 75)
    elif engine in NAMED_VOICES:
        voice = rng.choice(NAMED_VOICES[engine])
        rate, pitch = round(rng.uniform(0.85, 1.25), 2), rng.randint(90, 200)
    else:
        raise UserError(f"unknown speech synthesizer '{engine}' ({', '.join(ENGINE_PROGRAMS)})")
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
    of ``held_out_engine`` only, which no other split has. Each split draws from its own
    seeded generator, so more or fewer training speakers leave the val and test voices as
    they were."""
    seen = [engine for engine in ENGINE_PROGRAMS if engine != held_out_engine]
    table: dict[str, list[Speaker]] = {}
    for split, count in speakers_per_split.items():
        rng = split_random(seed, split)
        engines = [held_out_engine] if split == "test_unseen_engine" else seen
        table[split] = [
            draw_speaker(f"{split}-{i:03d}", engines[i % len(engines)], rng) for i in range(count)
        ]
    return table


def split_random(seed: int, split: str) -> random.Random:
    """The generator of one split's draws: seeded by the corpus seed and the split's name."""
    return random.Random(f"{seed}/{split}")


def scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def engine_commands(
    speaker: Speaker, texts: list[str], raws: list[Path]
) -> list[tuple[list[str], str]]:
    """The commands (and what each says, for errors) by which the speaker's engine says
    ``texts`` into the WAV files ``raws``: one per utterance (espeak-ng, flite), or one
    festival script for all of them (festival's start-up costs twenty sentences); the script is
    written next to ``raws``."""
    if speaker.engine == "espeak-ng":
        settings = ["-v", speaker.voice, "-s", f"{speaker.rate:.0f}", "-p", f"{speaker.pitch:.0f}"]
        return [
            (["espeak-ng", "-w", str(raw), *settings, "--", text], repr(text))
            for text, raw in zip(texts, raws, strict=True)
        ]
    if speaker.engine == "flite":
        settings = ["-voice", speaker.voice, "--setf", f"duration_stretch={speaker.rate}",
                    "--setf", f"int_f0_target_mean={speaker.pitch}"]  # fmt: skip
        return [
            (["flite", *settings, "-t", text, "-o", str(raw)], repr(text))
            for text, raw in zip(texts, raws, strict=True)
        ]
    script = [
        f"(voice_{speaker.voice})",
        f"(Parameter.set 'Duration_Stretch {speaker.rate})",
        # the intonation model's target mean F0, its spread a fifth of it
        f"(set! int_lr_params (append '((target_f0_mean {speaker.pitch}) "
        f"(target_f0_std {round(speaker.pitch / 5)})) int_lr_params))",
        *(
            f"(utt.save.wave (utt.synth (Utterance Text {scheme_string(text)})) "
            f"{scheme_string(str(raw))} 'riff)"
            for text, raw in zip(texts, raws, strict=True)
        ),
    ]
    path = raws[0].parent / "say.scm"
    path.write_text("\n".join(script) + "\n")
    return [(["festival", "--batch", str(path)], f"{len(texts)} sentences")]  # stops at an error


def effects_command(speaker: Speaker, raw: Path, out: Path, rate: int) -> list[str]:
    """sox from ``raw`` to ``out`` (16-bit mono at ``rate`` Hz) with the speaker's effects."""
    effects = ["speed", str(speaker.speed)] if speaker.speed != 1.0 else []
    if speaker.reverb:
        effects += ["reverb", str(speaker.reverb)]
    if speaker.telephone:
        effects += ["sinc", "300-3400", "rate", "8000"]
    # -R: repeatable (seeded) effects; -D: no random dither; so a seed makes the same bytes
    return ["sox", "-R", "-D", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out), *effects]


def run_tool(command: list[str], speaker: Speaker, what: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines() or ["no message"]
        message = next((line for line in lines if "error" in line.lower()), lines[-1])
        raise UserError(f"{command[0]} failed on {what} ({speaker.name}): {message}")


# one speaker's utterances: speaker, texts, output paths, sample rate, noise seeds
Job = tuple[Speaker, list[str], list[str], int, list[int]]


def synthesize(job: Job) -> list[float]:
    """Synthesize one speaker's utterances to WAV files; their durations in seconds."""
    speaker, texts, outs, rate, noise_seeds = job
    durations = []
    with tempfile.TemporaryDirectory() as scratch:
        raws = [Path(scratch) / f"{n}.wav" for n in range(len(texts))]
        for command, said in engine_commands(speaker, texts, raws):
            run_tool(command, speaker, said)
        Path(outs[0]).parent.mkdir(parents=True, exist_ok=True)  # the speaker's directory
        for text, raw, out, noise_seed in zip(texts, raws, outs, noise_seeds, strict=True):
            if not raw.is_file():
                raise UserError(f"{speaker.engine} made no audio of {text!r} ({speaker.name})")
            run_tool(effects_command(speaker, raw, Path(out), rate), speaker, repr(text))
            durations.append(add_noise(Path(out), speaker.snr_db, noise_seed, rate))
    return durations


def add_noise(path: Path, snr_db: float | None, seed: int, rate: int) -> float:
    """White noise at ``snr_db`` added to the WAV file in place (None: none); its duration."""
    audio, _ = soundfile.read(path, dtype="float32")
    if snr_db is not None:
        noise = np.random.default_rng(seed).standard_normal(audio.shape, np.float32)
        signal_power = float(np.mean(audio**2)) or 1e-8
        audio = audio + noise * np.sqrt(signal_power / 10 ** (snr_db / 10))
        peak = float(np.max(np.abs(audio)))
        soundfile.write(path, audio / max(peak, 1.0), rate, subtype="PCM_16")
    return len(audio) / rate


def check_programs(engines: Sequence[str]) -> None:
    """A clear error when a synthesizer or sox is not installed."""
    for program in [*(ENGINE_PROGRAMS[e] for e in engines), "sox"]:
        if shutil.which(program) is None:
            raise UserError(
                f"'{program}' is not installed: the speech corpus is synthesized with Debian's "
                "espeak-ng, festival (voice festvox-kdlpc16k), flite and sox (README: set-up)"
            )


def build_speech_corpus(
    cache_dir: Path,
    texts: dict[str, list[str]],
    speakers: dict[str, list[Speaker]],
    utterances_per_speaker: int | dict[str, int],
    sample_rate: int = 16000,
    seed: int = 0,
    processes: int | None = None,
    distinct_sentences: bool = False,
) -> Path:
    """The corpus directory for these texts and speakers, synthesized on a miss. Each speaker
    of a split says ``utterances_per_speaker`` sentences (or that split's count, given per
    split) drawn (seeded) from that split's texts (``test_unseen_engine`` uses the test
    texts). With ``distinct_sentences`` no two speakers of a split say the same sentence."""
    key = digest_values(
        FORMAT, texts, {k: [asdict(s) for s in v] for k, v in speakers.items()},
        utterances_per_speaker, sample_rate, seed, tool_versions(),
        *(["distinct sentences"] if distinct_sentences else []),
    )[:16]  # fmt: skip

    def build(directory: Path) -> dict[str, int]:
        check_programs(sorted({s.engine for group in speakers.values() for s in group}))
        jobs, manifests = plan(
            directory, texts, speakers, utterances_per_speaker, sample_rate, seed,
            distinct_sentences,
        )  # fmt: skip
        durations: list[float] = []  # of every utterance, in the manifests' order
        total = sum(len(job[1]) for job in jobs)
        with (
            get_context("fork").Pool(processes or os.cpu_count() or 1) as pool,
            tqdm(total=total, desc="synthesizing speech", unit=" utt") as progress,
        ):
            for speaker_durations in pool.imap(synthesize, jobs):  # one speaker at a time
                durations += speaker_durations
                progress.update(len(speaker_durations))
        rows = [row for split_rows in manifests.values() for row in split_rows]
        for row, duration in zip(rows, durations, strict=True):
            row["duration"] = round(duration, 3)
        for split, split_rows in manifests.items():
            lines = [json.dumps(row) + "\n" for row in split_rows]
            (directory / f"{split}.jsonl").write_text("".join(lines))
        write_speaker_table(directory / "speakers.tsv", speakers)
        return {"utterances": total, "format": FORMAT}

    return cached_directory(cache_dir, f"speech-v{FORMAT}-{key}", build)


def plan(
    directory: Path,
    texts: dict[str, list[str]],
    speakers: dict[str, list[Speaker]],
    utterances_per_speaker: int | dict[str, int],
    sample_rate: int,
    seed: int,
    distinct_sentences: bool = False,
) -> tuple[list[Job], dict[str, list[dict]]]:
    """The synthesis jobs (one per speaker), and each split's manifest rows in job order.
    Each split draws its sentences and noise from its own seeded generator."""
    jobs: list[Job] = []
    manifests: dict[str, list[dict]] = {}
    for split, group in speakers.items():
        rng = split_random(seed, split)
        sentences = texts["test" if split == "test_unseen_engine" else split]
        if not sentences:
            raise UserError(f"the speech corpus has no sentences for its {split} split")
        manifests[split] = []
        count = (
            utterances_per_speaker[split]
            if isinstance(utterances_per_speaker, dict)
            else utterances_per_speaker
        )
        shuffled = rng.sample(sentences, len(sentences)) if distinct_sentences else []
        for number, speaker in enumerate(group):
            if distinct_sentences:  # the speaker's own share of the split's sentences
                said = shuffled[number * count : (number + 1) * count]
            else:
                said = rng.sample(sentences, min(count, len(sentences)))
            if not said:
                continue
            paths = [f"wav/{speaker.name}/{n:04d}.wav" for n in range(len(said))]
            manifests[split] += [
                {"audio_filepath": path, "text": text, "speaker": speaker.name}
                for path, text in zip(paths, said, strict=True)
            ]
            outputs = [str(directory / path) for path in paths]
            noise_seeds = [rng.getrandbits(32) for _ in said]
            jobs.append((speaker, said, outputs, sample_rate, noise_seeds))
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
    for command in ([program, "--version"] for program in (*ENGINE_PROGRAMS.values(), "sox")):
        if shutil.which(command[0]):
            output = subprocess.run(command, capture_output=True, text=True).stdout
            versions.append(" ".join(output.split()[:6]))
    return versions
