"""Sweeps: the resumable Optuna study (our Hydra sweeper and encdec.tune with pruning), Hydra's
sweep grammar as Optuna distributions, bad input."""

import os
import subprocess
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from encdec.launch.sweeps import command_line, resume_study, resumed_sampler, search_space
from encdec.utils.errors import UserError
from tests.warm_cli import run_module

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "model=scan_transformer",
    "model.net.embedding_dim=32",
    "model.net.encoder.dim=32",
    "model.net.decoder.dim=32",
    "model.net.encoder.ff_dim=64",
    "model.net.decoder.ff_dim=64",
    "logger=csv",
    "callbacks=none",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def run_cli(module: str, *args: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return run_module(module, *args, f"paths.root_dir={root}", cwd=ROOT, env=env)


def load(root: Path, name: str = "train_scan_transformer") -> optuna.Study:
    storage = f"sqlite:///{root}/outputs/optuna/{name}.db"
    return optuna.load_study(study_name=name, storage=storage)


def test_search_space_reads_the_sweeper_grammar():
    space = search_space(
        {
            "model.optimizer.lr": "tag(log, interval(0.0001, 0.01))",
            "model.dropout": "interval(0.0, 0.5)",
            "model.cell": "choice(gru, lstm)",
            "seed": "7",
        }
    )
    assert space["model.optimizer.lr"].log and space["model.optimizer.lr"].high == 0.01
    assert (space["model.dropout"].low, space["model.dropout"].high) == (0.0, 0.5)
    assert space["model.cell"].choices == ("gru", "lstm")
    assert space["seed"] == "7"  # a fixed value, not searched


def test_search_space_reads_ranges_as_the_basic_sweeper_steps_through_them():
    space = search_space(
        {
            "a": "range(1, 5)",  # 1..4, as the basic sweeper
            "b": "range(0, 1, 0.3)",  # 0.0, 0.3, 0.6, 0.9: no rounding error in the last
            "c": "tag(log, range(1, 100))",
            "d": "choice('x,y', 2, 0.5)",
        }
    )
    assert (space["a"].low, space["a"].high, space["a"].step) == (1, 4, 1)
    assert (space["b"].low, space["b"].high, space["b"].step) == (0.0, 0.9, 0.3)
    assert space["c"].log and (space["c"].low, space["c"].high) == (1, 99)
    assert space["d"].choices == ("x\\,y", 2, 0.5)  # the string as a command line spells it


def test_command_line_overrides_read_as_params():
    params = command_line(["model=rnn", "model.dropout=interval(0.0, 0.5)", "~model.cell"])
    assert params == {"model": "rnn", "model.dropout": "interval(0.0, 0.5)", "~model.cell": "null"}
    assert search_space(params, where="")["model"] == "rnn"


@pytest.mark.parametrize(
    "value",
    [
        "normal(0, 1)",
        "interval(0.0",
        "interval(0.5, 0.0)",
        "range(3, 3)",
        "tag(lgo, interval(0.1, 1))",
        "tag(log, choice(0.1, 1))",
        "glob(*)",
    ],
)
def test_search_space_rejects_unknown_distributions_naming_the_key(value):
    with pytest.raises(
        UserError, match=r"hydra.sweeper.params.model.dropout: .* not an Optuna"
    ) as error:
        search_space({"model.dropout": value})
    assert "\n" not in str(error.value)  # one line


def test_resume_study_fails_the_interrupted_trial_and_counts_finished(tmp_path):
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for value in (1.0, 2.0):
        study.tell(study.ask(), value)
    study.ask()  # the process died during this trial
    assert resume_study(storage, "s") == 3
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).trials]
    assert states[2] == optuna.trial.TrialState.FAIL
    assert resume_study(f"sqlite:///{tmp_path}/other.db", "s") == 0  # no such study yet


def test_resumed_sampler_does_not_replay_the_first_points():
    config = OmegaConf.create({"_target_": "optuna.samplers.RandomSampler", "seed": 3})
    distribution = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}

    def first_point(sampler) -> float:
        study = optuna.create_study(sampler=sampler)
        return study.ask(fixed_distributions=distribution).params["x"]

    assert first_point(resumed_sampler(config, 0)) == first_point(resumed_sampler(config, 0))
    assert first_point(resumed_sampler(config, 2)) != first_point(resumed_sampler(config, 0))


@pytest.mark.slow
def test_optuna_sweep_resumes_to_its_total_number_of_trials(tmp_path):
    search = ["-m", "hparams_search=transformer", *TINY]
    first = run_cli("encdec.train", *search, "hydra.sweeper.n_trials=2", root=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Error importing" not in first.stdout + first.stderr  # no plugin missing
    assert [t.state.name for t in load(tmp_path).trials] == ["COMPLETE", "COMPLETE"]
    again = run_cli("encdec.train", *search, "hydra.sweeper.n_trials=3", root=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = load(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert trials[2].params != trials[0].params
    assert all(0.0 <= t.value <= 100.0 for t in trials)  # val/exact_match_best, returned


@pytest.mark.slow
def test_optuna_sweep_searches_the_command_line_in_batches_of_n_jobs(tmp_path):
    search = [
        "-m",
        "hparams_search=optuna",
        *TINY,
        "model.net.decoder.dropout=interval(0.0, 0.5)",
        "model.label_smoothing=choice(0.0, 0.1)",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
    ]
    first = run_cli("encdec.train", *search, root=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Error importing" not in first.stdout + first.stderr
    assert "Launching 2 jobs locally" in first.stdout  # one batch
    trials = load(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(
        t.params.keys() == {"model.net.decoder.dropout", "model.label_smoothing"} for t in trials
    )
    again = run_cli("encdec.train", *search, root=tmp_path)  # the same command: nothing to run
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 of 2 trials done" in again.stdout and "Launching" not in again.stdout
    assert len(load(tmp_path).trials) == 2


@pytest.mark.slow
def test_optuna_sweep_stops_when_more_trials_fail_than_allowed(tmp_path):
    result = run_cli(
        "encdec.train",
        "-m",
        "hparams_search=transformer",
        *TINY,
        "hydra.sweeper.n_trials=3",
        "+callbacks.boom._target_=tests.crash.RaiseAt",
        "+callbacks.boom.step=1",
        root=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: 1 of 1 trials failed, more than hydra.sweeper.max_failure_rate=0.0: "
        "trial 0: RuntimeError: boom at step 1"
    )
    assert [t.state.name for t in load(tmp_path).trials] == ["FAIL"]  # the first batch only


@pytest.mark.slow
def test_optuna_sweep_with_an_unknown_distribution_is_one_line(tmp_path):
    result = run_cli(
        "encdec.train",
        "-m",
        "hparams_search=transformer",
        *TINY,
        'hydra.sweeper.params={model.net.decoder.dropout:"normal(0, 1)"}',
        root=tmp_path,
    )
    assert result.returncode != 0
    assert "error: hydra.sweeper.params.model.net.decoder.dropout: 'normal(0, 1)'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_sweep_over_a_missing_key_is_a_clear_error(tmp_path):
    result = run_cli("encdec.train", "-m", *TINY, "model.hiden_size=1,2", root=tmp_path)
    assert result.returncode != 0
    assert "Could not override 'model.hiden_size'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_tune_prunes_trials_that_fall_behind(tmp_path):
    """A threshold no trial reaches: each trial stops at its first prunable validation, before
    training on and testing."""
    run_dir = tmp_path / "tune"
    result = run_cli(
        "encdec.tune",
        "hparams_search=transformer",
        *TINY,
        "trainer.max_epochs=4",
        "hydra.sweeper.n_trials=2",
        "pruner._target_=optuna.pruners.ThresholdPruner",
        "~pruner.n_startup_trials",
        "pruner.n_warmup_steps=0",
        "+pruner.lower=1000",
        f"hydra.run.dir={run_dir}",
        root=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "study train_scan_transformer: 2 pruned" in result.stdout
    trials = load(tmp_path).trials
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert [len(t.intermediate_values) for t in trials] == [1, 1]  # of 4 epochs
    for trial in ("trial_0", "trial_1"):
        assert (run_dir / trial / "config.yaml").is_file()
        assert not (run_dir / trial / "test_metrics.json").exists()


def test_tune_refuses_a_run_without_a_search(tmp_path):
    result = run_cli("encdec.tune", *TINY, f"hydra.run.dir={tmp_path / 'run'}", root=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: encdec.tune needs a search: hparams_search=rnn|attention|transformer|optuna"
    )


@pytest.mark.slow
def test_a_failing_job_logs_its_error_in_its_run_dir_at_once(tmp_path):
    """Hydra reports a multirun's failed jobs only after the last one: each job's own log has
    the traceback as soon as it fails, and the other jobs still run."""
    sweep = tmp_path / "sweep"
    result = run_cli(
        "encdec.train",
        "-m",
        *TINY,
        "seed=1,2",
        "+callbacks.boom._target_=tests.crash.RaiseAt",
        "+callbacks.boom.step=1",
        f"hydra.sweep.dir={sweep}",
        root=tmp_path,
    )
    assert result.returncode != 0
    for job in ("0", "1"):
        log = (sweep / job / "train.log").read_text()
        assert "the run failed" in log and "RuntimeError: boom at step 1" in log
