"""README's commands run as written: every ``python -m encdec...`` line of its bash blocks runs
in a subprocess, in README's order, from a directory with ``../shared`` beside it (as a clone
of the repository has), with a tiny budget appended. Placeholders (``<run>``, ``...``) become
the checkpoints and paths that the earlier commands produced. A command that needs what this
machine lacks (a network, GPUs, a SLURM cluster) must stop with one ``error:`` line saying so.
Nothing may print a traceback."""

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.conftest import SHARED_DATA
from tests.readme_commands import readme_commands
from tests.warm_cli import run_module

# appended to every training command: a few batches of everything, and narrower sweep grids
TINY_TRAINING = [
    "trainer.max_epochs=1",
    "trainer.max_steps=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]
TINY_BUDGET = {
    "encdec.train": TINY_TRAINING,
    "encdec.tune": [*TINY_TRAINING, "hydra.sweeper.n_trials=1"],
    "encdec.evaluate": ["trainer.limit_test_batches=1", "trainer.enable_progress_bar=false"],
}
NARROW_SWEEPS = {  # a sweep's grid narrowed as the configs' comments say, e.g. `seed=1`;
    # the speech corpus synthesized small
    "multirun": "seed=1",
    "experiment=compare_scan": "data.split=simple model=scan_rnn",
    "experiment=compare_multi30k": "model=multi30k_rnn",
    "experiment=compare_paradigms ": "paradigm=prefix_lm",  # (not compare_paradigms_scan)
    "experiment=compare_paradigms_scan": "data.split=length model=scan_encoder_ctc",
    "hparams_search=": "hydra.sweeper.n_trials=1",
    "experiment=speech_commands": "data.source.utterances_per_speaker=2 "  # a tiny corpus
    "data.source.speakers={train:4,val:1,test:1,test_unseen_engine:1}",
    "experiment=synthesis_commands": "data.source.utterances={train:30,val:2,test:2} "  # one voice
    "model.net.max_frames=200",
}
# what a command needs that a machine may lack -> the refusal it must print instead
NEEDS = {
    "network": (
        re.compile(r"(data|experiment)=multi30k\w*(?!.*data\.path)|pretrained=true"),
        "offline|unavailable",
    ),
    "GPUs": (re.compile(r"trainer=(ddp|gpu)\b"), "GPU"),
    "SLURM": (re.compile(r"hydra/launcher=slurm"), "SLURM|sbatch"),
}


def latest_checkpoint(workdir: Path, needle: str) -> Path:
    """best.ckpt of the newest run whose config mentions ``needle``."""
    runs = [
        config.parent
        for config in (workdir / "outputs").glob("*/*runs/**/config.yaml")
        if needle in config.read_text() and (config.parent / "checkpoints/best.ckpt").is_file()
    ]
    assert runs, f"no earlier README command trained a {needle} model"
    return max(runs, key=lambda run: run.stat().st_mtime) / "checkpoints" / "best.ckpt"


def concrete(command: str, workdir: Path) -> tuple[list[str], str]:
    """The command's argv with placeholders filled in and the tiny budget appended, and its
    stdin."""
    stdin = ""
    if command.startswith("echo "):
        echoed, command = command.split("|", 1)
        stdin = shlex.split(echoed)[1] + "\n"
    if "<" in command.split("encdec.", 1)[1]:  # `< test.de > test.en`: a file through the filter
        command = command.split(" < ", 1)[0]
        stdin = "Ein Hund läuft über die Wiese.\nZwei Männer spielen Fußball.\n"
    words = command.split()
    module = words[2]
    entry_point = words[3] if module == "encdec.fast" else module  # the launcher runs it
    if "init_from=" in command:  # the pretrained checkpoint of an earlier command
        ckpt = latest_checkpoint(workdir, "MonolingualDataModule")
        command = re.sub(r"init_from=\S+", f"init_from={ckpt}", command)
    if "ckpt_path=" in command:
        needle = "flickr8k" if "flickr8k" in command else "multi30k"
        if module == "encdec.caption":
            needle = "CaptionMetrics"  # a captioning model's metric
        if module == "encdec.transcribe" or "test_unseen_engine" in command:
            needle = "SpeechMetrics"  # a speech recognizer's
        if module == "encdec.speak":
            needle = "MelCepstralDistortion"  # a speech synthesizer's
        ckpt = latest_checkpoint(workdir, needle)
        command = re.sub(r"ckpt_path=\S+", f"ckpt_path={ckpt}", command)
    command = command.replace("data.path=...", "data.path=../shared/data/flickr8k")
    args = [arg for arg in shlex.split(command)[3:] if arg != "..."]
    args += TINY_BUDGET.get(entry_point, [])
    multirun = "multirun" if "-m" in args else ""
    for key, narrow in NARROW_SWEEPS.items():
        args += narrow.split() if key in command + multirun else []
    if "multi30k" in command and entry_point in TINY_BUDGET:  # batches of a few sentences: an
        args.append("data.max_tokens=512")  # untrained model searches to the length limit
    return [sys.executable, "-m", module, *args], stdin


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data absent")
    workdir = tmp_path / "clone"  # ../shared beside it, as beside a clone of the repository
    workdir.mkdir()
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent)
    image = next((SHARED_DATA / "flickr8k" / "images").glob("*.jpg"))
    shutil.copy(image, workdir / "dog.jpg")
    speech = 0.3 * np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000)  # what transcribe reads
    soundfile.write(workdir / "a.wav", speech.astype(np.float32), 16000)
    manifest = {"audio_filepath": "a.wav", "text": "a tone"}
    (workdir / "m.jsonl").write_text(json.dumps(manifest) + "\n")
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PROJECT_ROOT": str(workdir),
    }
    env.pop("SLURM_CONF", None)
    commands = readme_commands()
    assert len(commands) >= 25 and commands[0] == "python -m encdec.train"
    problems = [
        problem
        for command, result, stdin in run_two_at_a_time(commands, workdir, env)
        if (problem := check(command, result, stdin))
    ]
    assert not problems, "\n".join(problems)


def run_two_at_a_time(
    commands: list[str], workdir: Path, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.CompletedProcess, str]]:
    """Run the commands in README's order, two at a time on one thread each (Python's start is
    most of a tiny run, and single-threaded). The first command of each entry point starts a
    fresh interpreter, as a user's does; the later ones are children of a warm interpreter
    (tests/warm_cli.py: the same argv, working directory, environment and stdin, without
    importing torch and Lightning again). A command that reads what earlier ones wrote (a
    checkpoint, an Optuna study) waits for them; starts are a second apart, since run dirs are
    named by the second."""
    env = {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started: set[str] = set()  # the entry points started once in a fresh interpreter
    with ThreadPoolExecutor(max_workers=2) as pool:
        running: list[tuple[str, Future, str]] = []
        for command in commands:
            if any(reads in command for reads in ("ckpt_path=", "init_from=", "hparams_search=")):
                yield from ((c, f.result(), s) for c, f, s in running)
                running = []
            argv, stdin = concrete(command, workdir)
            module, args = argv[2], argv[3:]
            if module in started:
                run = functools.partial(
                    run_module, module, *args, cwd=workdir, env=env, stdin=stdin, timeout=600
                )
            else:
                started.add(module)
                run = functools.partial(
                    subprocess.run, argv, input=stdin, text=True, capture_output=True,
                    cwd=workdir, env=env, timeout=600,
                )  # fmt: skip
            running.append((command, pool.submit(run), stdin))
            time.sleep(1.1)
        yield from ((c, f.result(), s) for c, f, s in running)


def check(command: str, result: subprocess.CompletedProcess, stdin: str) -> str | None:
    """What is wrong with a README command's run, if anything."""
    console = result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    refusals = [why for needs, why in NEEDS.values() if needs.search(command)]
    if result.returncode == 0:  # a filter answers every line (with n_best lines each)
        n_best = re.search(r"decoding\.n_best=(\d+)", command)
        expected_lines = stdin.count("\n") * (int(n_best.group(1)) if n_best else 1)
        wrong = "encdec.translate" in command and result.stdout.count("\n") != expected_lines
    else:  # only a refusal for what this machine lacks, in one line
        wrong = not (
            result.returncode == 2
            and len(errors) == 1
            and refusals
            and re.search("|".join(refusals), errors[0])
        )
    noise = [
        n for n in ("Traceback", "Error importing", "Images sizes do not match") if n in console
    ]
    if not (wrong or noise):
        return None
    tail = "\n    ".join(console.strip().splitlines()[-6:])
    return f"{command}\n  exit {result.returncode} {noise}:\n    {tail}"
