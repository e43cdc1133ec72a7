"""The run folder: no kill corrupts it and no second process shares it.

(1) Fault injection: a tiny von-oswald run is crashed at its k-th file-system step, for
every k, and resumed; (2) real ``kill -9``s of ``python -m iclab run`` at random instants,
then ``--resume``. Either way the checkpoint, the metric tables, the results and the
summary's headline equal an uninterrupted run's bit for bit. Then the lock, the ``--out``
guards, symbolic links and corrupt run files: each a one-line error, exit status 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from jax.experimental.compilation_cache import compilation_cache

import iclab
import iclab.recipes.von_oswald as von_oswald
import iclab.store
from iclab.cli import main
from iclab.errors import RunFolderError
from iclab.recipes import RECIPES
from iclab.store import RunStore, write_file
from iclab.tasks import LinearRegression

# Two checkpoints (steps 10 and 20) with evaluations between them; a small task, so that a
# fresh process has few programs to compile.
CONFIG = iclab.default_config("von-oswald")
CONFIG = dataclasses.replace(
    CONFIG, task=LinearRegression(dim=2, n_context=2), tuning_size=32, shift_episodes=16,
    train=dataclasses.replace(CONFIG.train, steps=20, batch_size=16, eval_every=5,
                              checkpoint_every=10, eval_size=32))
CLI_OPTIONS = ["--task.dim", "2", "--task.n-context", "2", "--train.steps", "20",
               "--train.batch-size", "16", "--train.eval-every", "5",
               "--train.checkpoint-every", "10", "--train.eval-size", "32",
               "--tuning-size", "32", "--shift-episodes", "16", "--no-progress"]
ROOT = Path(iclab.__file__).resolve().parents[1]


class Crash(BaseException):
    """A simulated kill: no ``except Exception`` sees it, so no cleanup code runs."""


class FaultyOs:
    """``os`` as :mod:`iclab.store` sees it: counts every file-system step of the run (a
    temporary file created, its content written, a rename, a delete, a folder made) and,
    at step ``crash_at``, leaves what a kill would leave there and raises :class:`Crash`."""

    def __init__(self, crash_at: int | None = None):
        self.crash_at, self.steps = crash_at, 0

    def __getattr__(self, name):
        return getattr(os, name)

    def _crash_now(self) -> bool:
        self.steps += 1
        return self.steps == self.crash_at

    def open(self, path, flags, mode=0o777, **kwargs):
        fd = os.open(path, flags, mode, **kwargs)
        if flags & os.O_EXCL and self._crash_now():  # killed just after creating it
            os.close(fd)
            raise Crash
        return fd

    def fsync(self, fd):
        if stat.S_ISREG(os.fstat(fd).st_mode) and self._crash_now():
            os.ftruncate(fd, os.fstat(fd).st_size // 2)  # killed halfway through the write
            raise Crash
        os.fsync(fd)

    def replace(self, src, dst):
        if self._crash_now():
            raise Crash
        os.replace(src, dst)

    def unlink(self, path):
        if self._crash_now():
            raise Crash
        os.unlink(path)

    def mkdir(self, path, mode=0o777):
        if self._crash_now():
            raise Crash
        os.mkdir(path, mode)


@pytest.fixture(scope="module")
def fast_runs():
    """In-process runs share one compiled trainer and one tuned GD, draw the shift curves
    at two scales, and write placeholder figures (reading the files the real figures read,
    writing the files they write): none of this changes a file-system step, and each run
    takes a fraction of a second. (So ``results.npz`` differs from a CLI run's.)"""
    patch = pytest.MonkeyPatch()
    entry, make_trainer, tune_gd = RECIPES["von-oswald"], von_oswald.Trainer, von_oswald.tune_gd

    trainers, tuned = {}, {}

    def trainer(task, fmt, build, config):
        if (task, fmt, config) not in trainers:
            trainers[task, fmt, config] = make_trainer(task, fmt, build, config)
        return trainers[task, fmt, config]

    def tune(tuning, steps):
        if steps not in tuned:
            tuned[steps] = tune_gd(tuning, steps=steps)
        return tuned[steps]

    def figures(store, summary):
        store.read_arrays("results.npz")
        store.read_table("train_metrics.parquet")
        store.read_table("eval_metrics.parquet")
        names = ("loss_curve.png", "icl_curve.png", "weights.png", "shift.png")
        for name in names:
            write_file(store.figures / name, lambda file: file.write(b"\x89PNG"))
        return [(name, name) for name in names]

    patch.setattr(von_oswald, "INPUT_SCALES", (0.5, 2.0))
    patch.setattr(von_oswald, "WEIGHT_SCALES", (0.5, 2.0))
    patch.setattr(von_oswald, "Trainer", trainer)
    patch.setattr(von_oswald, "tune_gd", tune)
    patch.setitem(RECIPES, "von-oswald", dataclasses.replace(entry, figures=figures))
    yield
    patch.undo()


@contextlib.contextmanager
def persistent_compilation_cache(folder: Path):
    """Compiled programs also go to ``folder`` while the block runs, for the subprocesses."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    before = {name: getattr(jax.config, name) for name in names}
    for name, value in zip(names, (str(folder), 0, 0), strict=True):
        jax.config.update(name, value)
    compilation_cache.reset_cache()  # read the settings again, even if it was set up before
    try:
        yield
    finally:
        for name, value in before.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax-cache")


@pytest.fixture(scope="module")
def reference(fast_runs, jax_cache, tmp_path_factory):
    """The uninterrupted run, and how many file-system steps it takes."""
    out = tmp_path_factory.mktemp("reference") / "run"
    counter = FaultyOs()
    with pytest.MonkeyPatch.context() as patch, persistent_compilation_cache(jax_cache):
        patch.setattr(iclab.store, "os", counter)
        iclab.run("von-oswald", CONFIG, out=out, progress=False)
    return out, counter.steps


def assert_same_run(expected: Path, actual: Path, results: bool = True) -> None:
    """Same checkpoint arrays, metric tables, headline (and results), bit for bit; no temp
    file left behind."""
    a, b = RunStore(expected), RunStore(actual)
    for name in ("checkpoint.npz", "results.npz") if results else ("checkpoint.npz",):
        arrays_a, arrays_b = a.read_arrays(name), b.read_arrays(name)
        assert arrays_a.keys() == arrays_b.keys()
        for key in arrays_a:
            np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    for name in ("train_metrics.parquet", "eval_metrics.parquet"):
        pd.testing.assert_frame_equal(a.read_table(name), b.read_table(name), check_exact=True)
    assert a.read_json("summary.json")["headline"] == b.read_json("summary.json")["headline"]
    assert b.exists("report.html")
    leftovers = [name for _, _, files in os.walk(actual) for name in files
                 if name.endswith(".tmp")]
    assert not leftovers


@pytest.mark.e2e
def test_a_crash_at_any_file_system_step_resumes_to_the_same_run(reference, tmp_path):
    expected, n_steps = reference
    assert n_steps > 30  # config, two checkpoints of three files, results, figures, report
    for k in range(1, n_steps + 1):
        out = tmp_path / f"crash-{k}"
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(iclab.store, "os", FaultyOs(crash_at=k))
            with pytest.raises(Crash):
                iclab.run("von-oswald", CONFIG, out=out, progress=False)
        plt.close("all")
        # A folder the crash left without its config.json holds no run: start it again.
        iclab.run("von-oswald", CONFIG, out=out, resume=(out / "config.json").exists(),
                  progress=False)
        assert_same_run(expected, out)
        shutil.rmtree(out)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("iclab: error: ") and err.count("\n") == 1, err
    return err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "iclab", *args]


@pytest.fixture(scope="module")
def subprocess_env(jax_cache):
    """Subprocesses load what the reference run compiled, instead of compiling it again."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "JAX_COMPILATION_CACHE_DIR": str(jax_cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _wait_for_lock(out: Path, process: subprocess.Popen, timeout: float = 300) -> bool:
    """Wait until ``process`` holds ``out``'s lock; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if (out / ".lock").read_text().strip() == str(process.pid):
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise TimeoutError(f"{process.args} did not lock {out}")


@pytest.mark.e2e
def test_kill_9_at_random_instants_then_resume(reference, subprocess_env, tmp_path, capsys):
    expected, _ = reference
    out = tmp_path / "killed"
    rng, kills = random.Random(0), 0
    for _ in range(2):
        resume = ["--resume"] if (out / "config.json").exists() else []
        process = subprocess.Popen(_cli("run", "von-oswald", "--out", str(out), *CLI_OPTIONS,
                                        *resume), cwd=ROOT, env=subprocess_env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if _wait_for_lock(out, process):
            # Held by a live process (frozen meanwhile), the folder refuses a second one.
            process.send_signal(signal.SIGSTOP)
            assert main(["run", "von-oswald", "--out", str(out), *CLI_OPTIONS]) == 2
            assert f"{out} is in use by another iclab process (pid {process.pid})" in \
                _one_line_error(capsys)
            process.send_signal(signal.SIGCONT)
            time.sleep(rng.uniform(0.0, 2.0))
            process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate()
        assert process.returncode in (0, -signal.SIGKILL), stderr.decode()
        kills += process.returncode == -signal.SIGKILL
    assert kills, "every process finished before its kill: nothing was tested"
    finished = subprocess.run(_cli("run", "von-oswald", "--out", str(out), "--resume",
                                   "--no-progress"), cwd=ROOT, env=subprocess_env,
                              capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert_same_run(expected, out, results=False)  # its shift curves have seven scales


def test_quick_compilation_leaves_no_program_behind(quick_compilation_block):
    """The in-process reference above must round like a fresh process: episodes sampled
    eagerly after a quick-compiling test module equal those of freshly compiled programs
    (they differ in the last bit while the quick programs are still cached). The session's
    disk cache, on throughout, keeps the two kinds of program apart both ways."""
    def sample() -> list[np.ndarray]:
        return [np.asarray(leaf) for leaf in
                jax.tree.leaves(LinearRegression(dim=2, n_context=2).sample(jax.random.key(3), 32))]

    with quick_compilation_block():
        quick = sample()
    after = sample()
    jax.clear_caches()
    fresh = sample()
    assert any(not np.array_equal(a, b) for a, b in zip(quick, fresh, strict=True))
    for a, b in zip(after, fresh, strict=True):
        np.testing.assert_array_equal(a, b)
    with quick_compilation_block():
        again = sample()
    for a, b in zip(quick, again, strict=True):
        np.testing.assert_array_equal(a, b)


# --- the lock -------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_folder_in_use_refuses_every_other_user(reference, capsys):
    """(A second process is refused in :func:`test_kill_9_at_random_instants_then_resume`;
    ``flock`` refuses a second open file of the same process alike.)"""
    run_dir, _ = reference
    message = f"{run_dir} is in use by another iclab process (pid {os.getpid()})"
    with RunStore.open(run_dir, "report"):
        assert main(["report", str(run_dir)]) == 2
        assert message in _one_line_error(capsys)
        assert main(["run", "von-oswald", "--out", str(run_dir), "--resume"]) == 2
        assert message in _one_line_error(capsys)
        assert main(["run", "von-oswald", "--out", str(run_dir), *CLI_OPTIONS]) == 2
        assert message in _one_line_error(capsys)
    # Released with the block (or the process): the folder opens again.
    with RunStore.open(run_dir, "report") as store:
        assert store.holds_run()


# --- the --out guards -----------------------------------------------------------------


def test_empty_out_is_refused_without_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "von-oswald", "--out", "", *CLI_OPTIONS]) == 2
    assert "--out is empty" in _one_line_error(capsys)
    assert main(["run", "von-oswald", "--out", "", "--resume"]) == 2
    _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_of_other_files_is_refused_and_left_alone(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "data").mkdir()
    assert main(["run", "von-oswald", "--out", str(tmp_path), *CLI_OPTIONS]) == 2
    assert "holds no iclab run (data, notes.txt)" in _one_line_error(capsys)
    assert main(["run", "von-oswald", "--out", str(tmp_path), "--resume"]) == 2
    assert "not an iclab run folder" in _one_line_error(capsys)
    assert main(["report", str(tmp_path)]) == 2
    _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    missing = tmp_path / "missing"
    assert main(["run", "von-oswald", "--out", str(missing), "--resume"]) == 2
    assert "no run folder to resume" in _one_line_error(capsys)
    assert not missing.exists()
    with pytest.raises(RunFolderError, match="is not a folder"), \
            RunStore.open(tmp_path / "notes.txt", "new"):
        pass


def test_an_empty_folder_or_one_left_by_a_crash_before_any_run_file_is_used(tmp_path):
    (tmp_path / ".lock").write_text("12345\n")
    (tmp_path / ".config.json.0123abcd.tmp").write_text('{"rec')
    with RunStore.open(tmp_path, "new") as store:
        assert not store.holds_run()
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # stale temp gone


@pytest.fixture
def run_copy(reference, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(reference[0], copy)
    return copy


@pytest.mark.parametrize("link", ["figures/loss_curve.png", "figures", "report.html"])
def test_report_never_follows_a_symbolic_link_in_the_run_folder(run_copy, tmp_path, link,
                                                                capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "loss_curve.png").write_text("precious")
    target = run_copy / link
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.symlink_to(victim if link == "figures" else victim / "loss_curve.png")
    assert main(["report", str(run_copy)]) == 2
    assert f"{target} is a symbolic link" in _one_line_error(capsys)
    assert main(["run", "von-oswald", "--out", str(run_copy), "--resume"]) == 2
    assert f"{target} is a symbolic link" in _one_line_error(capsys)
    assert [p.name for p in victim.iterdir()] == ["loss_curve.png"]
    assert (victim / "loss_curve.png").read_text() == "precious"


def test_the_writer_refuses_to_replace_a_symbolic_link(tmp_path):
    (tmp_path / "elsewhere").write_text("precious")
    (tmp_path / "link.json").symlink_to(tmp_path / "elsewhere")
    store = RunStore(tmp_path)
    with pytest.raises(RunFolderError, match=r"link\.json is a symbolic link"):
        store.write_json("link.json", {})
    with pytest.raises(RunFolderError, match=r"link\.json is a symbolic link"):
        store.read_json("link.json")
    assert (tmp_path / "elsewhere").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "link.json"]


# --- corrupt run files ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "command"), [
    ("checkpoint.npz", "resume"), ("train_metrics.parquet", "resume"),
    ("eval_metrics.parquet", "resume"), ("config.json", "resume"),
    ("summary.json", "report"), ("results.npz", "report"), ("eval_metrics.parquet", "report"),
])
def test_a_truncated_run_file_is_a_one_line_error_naming_it(fast_runs, run_copy, name,
                                                            command, capsys):
    path = run_copy / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    argv = (["run", "von-oswald", "--out", str(run_copy), "--resume"] if command == "resume"
            else ["report", str(run_copy)])
    assert main(argv) == 2
    assert re.search(rf"{re.escape(str(path))}: not (a readable|an iclab)",
                     _one_line_error(capsys))


def test_resume_refuses_tables_that_end_before_the_checkpoint(fast_runs, run_copy, capsys):
    store = RunStore(run_copy)
    train = store.read_table("train_metrics.parquet")
    store.write_table("train_metrics.parquet", train[train.step <= 10])
    assert main(["run", "von-oswald", "--out", str(run_copy), "--resume"]) == 2
    assert "train_metrics.parquet ends at step 10, before the checkpoint's step 20" in \
        _one_line_error(capsys)


def test_write_file_leaves_no_temp_when_the_writer_fails(tmp_path):
    def fail(file):
        file.write(b"half")
        raise ValueError("serialiser failed")

    with pytest.raises(ValueError, match="serialiser"):
        write_file(tmp_path / "x.json", fail)
    assert list(tmp_path.iterdir()) == []
