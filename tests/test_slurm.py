"""hydra/launcher=slurm: the start-up check, the launcher configs, and (slow) a multirun on a real
one-node SLURM cluster started by ``scripts/slurm/local_cluster.sh``: both jobs finish, and the
job sent the requeue signal mid-epoch checkpoints, requeues, resumes and ends bit for bit like
the uninterrupted one."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from encdec.launch import slurm
from encdec.launch.resuming import resume_checkpoint
from tests.conftest import compose_config
from tests.test_entry_points import TINY_TRAIN
from tests.test_resume import outcome

ROOT = Path(__file__).resolve().parents[1]
LOCAL_CLUSTER = ROOT / "scripts" / "slurm" / "local_cluster.sh"
TINY_SWEEP = [
    *TINY_TRAIN["transformer"],
    "model.net.encoder.num_layers=1",
    "model.net.decoder.num_layers=1",
    "model.net.decoder.dropout=0.3",  # dropout draws from the RNG: its state survives a requeue
    "seed=7",
    "data.max_tokens=256",
    "decoding.max_len_a=1",
    "decoding.max_len_b=5",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=6",
    "trainer.limit_val_batches=1",
    "callbacks.last_checkpoint.every_n_train_steps=1000",  # last.ckpt only at epoch ends
]
PAUSE_STEP = 3  # mid-epoch 0: no last.ckpt exists then unless the requeue signal writes one


def cli_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ENCDEC_TCMALLOC": "0",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",  # two jobs share the node's cores
        **extra,
    }


def test_slurm_launcher_without_sbatch_is_one_clear_line(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    command = [sys.executable, "-m", "encdec.train", "-m", "hydra/launcher=slurm", "seed=1,2"]
    command.append(f"hydra.sweep.dir={tmp_path / 'sweep'}")
    env = cli_env(PATH=str(empty))
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: hydra/launcher=slurm but no sbatch on PATH "
        "(for a local one-node cluster: scripts/slurm/local_cluster.sh start DIR)"
    ]
    assert not (tmp_path / "sweep" / ".submitit").exists()  # nothing was submitted


@pytest.mark.parametrize(
    ("overrides", "tasks", "gpus"),
    [
        (["hydra/launcher=slurm"], 1, None),
        (["hydra/launcher=slurm", "trainer=ddp"], 2, 2),
        (["hydra/launcher=slurm", "trainer=gpu", "trainer.num_nodes=2"], 1, 1),
        (["hydra/launcher=slurm_local"], 1, None),
    ],
)
def test_slurm_launcher_asks_one_task_per_device(tmp_path, overrides, tasks, gpus):
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from encdec.utils.config import CONFIG_DIR

    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra.compose("train", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"]) == (tasks, gpus)
    assert launcher["nodes"] == cfg.trainer.num_nodes
    compose_config("train", overrides, tmp_path / "run")  # the rest composes too


def test_requeued_job_continues_from_its_last_checkpoint(tmp_path, monkeypatch):
    cfg = OmegaConf.create({"resume": None, "ckpt_path": "start.ckpt"})
    last = tmp_path / "checkpoints" / "last.ckpt"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    last.parent.mkdir()
    last.write_bytes(b"")
    assert resume_checkpoint(cfg, tmp_path) == "start.ckpt"  # first start: as asked
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert resume_checkpoint(cfg, tmp_path) == str(last)  # requeued: this run's own progress
    last.unlink()
    assert resume_checkpoint(cfg, tmp_path) == "start.ckpt"  # requeued before any checkpoint


def free_port_base(count: int = 4) -> int:
    """The first of ``count`` consecutive free loopback ports (slurmctld, slurmd, slurmdbd,
    MariaDB), away from the default ones so that a user's cluster keeps running."""
    for base in range(16817, 17817, 10):
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports for the test cluster")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[dict[str, str]]:
    """A one-node SLURM with accounting, for the session; the environment that reaches it."""
    if os.geteuid() != 0:
        pytest.skip("starting SLURM daemons (and installing them) needs root")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    base = Path(tempfile.mkdtemp(prefix="encdec-slurm-"))
    base.chmod(0o755)  # the munge and mysql users work inside
    env = {**os.environ, "ENCDEC_SLURM_PORT": str(free_port_base())}
    command = [str(LOCAL_CLUSTER), "start", str(base)]
    started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    try:
        if started.returncode != 0 and shutil.which("slurmctld") is None:
            pytest.skip(f"could not install SLURM: {started.stderr.strip()[-500:]}")
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"export SLURM_CONF={base}/etc/slurm.conf" in started.stdout
        yield {"SLURM_CONF": str(base / "etc" / "slurm.conf")}
    finally:
        subprocess.run([str(LOCAL_CLUSTER), "stop", str(base)], env=env, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"no {path} after {timeout_s} s"
        time.sleep(0.2)


def start_requeued_job_now(job: str, env: dict[str, str], timeout_s: float) -> None:
    """SLURM holds a requeued job back for two minutes (its BeginTime); the test does not wait."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        squeue = ["squeue", "--noheader", "--jobs", job, "--format=%T %r"]
        state = subprocess.run(squeue, env=env, capture_output=True, text=True, timeout=30)
        if state.stdout.split() == ["PENDING", "BeginTime"]:
            update = ["scontrol", "update", f"jobid={job}", "StartTime=now"]
            subprocess.run(update, env=env, check=True, timeout=30)
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job} was not requeued within {timeout_s} s")


def test_a_requeued_job_lets_slurm_stop_it_instead_of_exiting_first(monkeypatch):
    """submitit's handler requeues and then exits; the held signal's release waits for SLURM
    to end the job (so that it is never recorded FAILED) and only then lets the exit go on."""
    waited = []
    monkeypatch.setattr(slurm, "wait_to_be_stopped_by_slurm", lambda: waited.append(True))

    def submitit_handler(signum: int, frame: object) -> None:
        raise SystemExit(-1)  # as submitit's after `scontrol requeue`

    held = slurm.RequeueSignal()
    previous = signal.getsignal(signal.SIGUSR2)
    held._signal, held._submitit_handler = signal.SIGUSR2, submitit_handler
    held.pending = signal.SIGUSR2
    try:
        with pytest.raises(SystemExit):
            held.release()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert waited == [True] and not held.installed


@pytest.mark.slow
def test_multirun_on_slurm_requeues_on_signal_and_resumes_bit_for_bit(tmp_path, slurm_cluster):
    """Two identical jobs (they differ only in the step the pause callback waits at); job 0 gets
    submitit's requeue signal (USR2) mid-epoch, job 1 runs through."""
    sweep = tmp_path / "sweep"
    overrides = [
        "hydra/launcher=slurm_local",
        *TINY_SWEEP,
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
        "+callbacks.pause._target_=tests.crash.PauseForRequeueSignal",
        f"+callbacks.pause.step={PAUSE_STEP},1000",
    ]
    env = cli_env(**slurm_cluster)
    process = subprocess.Popen(
        [sys.executable, "-m", "encdec.train", "-m", *overrides],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(sweep / "0" / "paused", process, timeout_s=120)
        (job_dir,) = (sweep / ".submitit").glob("*_0")  # array job N, task 0: "N_0"
        subprocess.run(["scancel", "--signal=USR2", job_dir.name], env=env, check=True)
        start_requeued_job_now(job_dir.name, env, timeout_s=60)
        output = process.communicate(timeout=240)[0]
    finally:
        if process.poll() is None:
            process.kill()
            jobs = [path.name for path in (sweep / ".submitit").glob("*")]
            subprocess.run(["scancel", *jobs], env=env, timeout=30)
    assert process.returncode == 0, output[-3000:]

    log = (sweep / "0" / "train.log").read_text()
    assert "SLURM requeued this job (restart 1): continuing from" in log, log[-3000:]
    resumed_step = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", weights_only=True)[
        "global_step"
    ]
    assert resumed_step == 2 * 6  # both ran to the end
    requeued, whole = outcome(sweep / "0"), outcome(sweep / "1")
    for expected, actual in zip(whole[:2], requeued[:2], strict=True):  # last and best weights
        assert expected.keys() == actual.keys()
        for name, tensor in expected.items():
            assert torch.equal(actual[name], tensor), name
    assert requeued[2:] == whole[2:]  # test metrics and predictions
