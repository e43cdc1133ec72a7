"""Bad input through the real ``iclab`` command, across all five recipes: every case exits
with status 2 and one line ``iclab: error: ...`` on stderr that names the option, file or
folder, with no traceback, before anything is compiled or written.

Options (non-finite, negative, zero, past int32, wrong type, unknown, contradictory, without
effect, too large for memory, spanning two components), dataset files (missing, a folder,
unreadable, not a zip, a ``.npy`` named ``.npz``, classes that do not fit) and run folders
(malformed ``config.json``, ``checkpoint.npz`` and ``summary.json`` for ``--resume`` and
``iclab report``; what ``iclab compare`` cannot compare). Most cases run in-process (fast);
two go through a subprocess to check the exit status a shell sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iclab.cli import main
from iclab.config import to_dict
from iclab.results import RecipeResult, RunInfo, Summary
from iclab.runner import default_config

# (id, argv, text the message must hold). "{files}" is the folder of prepared files below;
# "{out}" a run folder that must not exist afterwards.
VON_OSWALD = [
    ("vo-lr-inf", ["--train.lr", "inf"], "train.lr"),
    ("vo-lr-nan", ["--train.lr", "nan"], "train.lr"),
    ("vo-lr-negative", ["--train.lr", "-0.1"], "train.lr"),
    ("vo-lr-wrong-type", ["--train.lr", "fast"], "--train.lr"),
    ("vo-noise-inf", ["--task.noise-std", "inf"], "task.noise_std"),
    ("vo-grad-clip-inf", ["--train.grad-clip", "inf"], "train.grad_clip"),
    ("vo-steps-zero", ["--train.steps", "0"], "train.steps"),
    ("vo-steps-past-int32", ["--train.steps", "3000000000"], "train.steps"),
    ("vo-steps-not-int", ["--train.steps", "1e4"], "--train.steps"),
    ("vo-unknown-option", ["--train.learning-rate", "0.1"], "--train.learning-rate"),
    ("vo-weight-decay-adam", ["--train.weight-decay", "0.01"], "train.weight_decay"),
    ("vo-b1-sgd", ["--train.optimizer", "sgd", "--train.b2", "0.999", "--train.b1", "0.5"],
     "train.b1"),
    ("vo-b2-sgd", ["--train.optimizer", "sgd"], "train.b2"),  # the recipe's 0.98 is Adam's
    ("vo-eval-vs-checkpoint", ["--train.eval-every", "300"], "train.checkpoint_every"),
    ("vo-batch-memory", ["--train.batch-size", "2000000000"], "train.batch_size"),
    ("vo-eval-memory", ["--train.eval-size", "2000000000"], "train.eval_size"),
    ("vo-seeds-zero", ["--seeds", "0"], "seeds"),
    ("vo-seeds-past-int32", ["--seed", "2147483647", "--seeds", "2"], "seeds"),
    ("vo-pool-seed-no-pool", ["--task.pool-seed", "3"], "task.pool_seed"),
    ("vo-tied-one-layer", ["--model.tied"], "model.tied"),
    ("vo-divergence-factor", ["--train.divergence-factor", "0.5"], "train.divergence_factor"),
    ("vo-dim-zero", ["--task.dim", "0"], "task.dim"),
]
REDDY = [
    ("rd-position-width", ["--format.position-width", "10"], "format.position_width"),
    ("rd-read-in-width", ["--format.position-width", "70"], "model.d_model"),
    ("rd-one-layer", ["--model.n-layers", "1"], "model.n_layers"),
    ("rd-noise-inf", ["--task.within-class-noise", "inf"], "task.within_class_noise"),
    ("rd-p-bursty", ["--task.p-bursty", "1.5"], "task.p_bursty"),
    ("rd-label-seed-onehot", ["--format.label-code", "onehot", "--format.label-seed", "3"],
     "format.label_seed"),
    ("rd-intervention", ["--intervention", "clamp-everything"], "--intervention"),
    ("rd-classes-past-int32", ["--task.n-classes", "3000000000"], "task.n_classes"),
    ("rd-burstiness", ["--task.burstiness", "3"], "task.burstiness"),
]
MINEGISHI = [
    ("mg-three-layers", ["--model.n-layers", "3"], "model.n_layers"),
    ("mg-merge-below-inf", ["--phases.merge-below", "inf"], "phases.merge_below"),
    ("mg-task-prior-one-task", ["--task.n-tasks", "1", "--task.task-zipf-alpha", "1"],
     "task.task_zipf_alpha"),
    ("mg-onehot-labels-wider-than-items", ["--format.label-code", "onehot", "--task.dim",
                                           "16"], "format.n_labels"),
    ("mg-eps-sgd", ["--train.eps", "1e-6"], "train.eps"),
    ("mg-seeds-memory", ["--seeds", "100000"], "or seeds"),
    ("mg-n-labels", ["--format.n-labels", "16"], "format.n_labels"),
    ("mg-lr-zero", ["--train.lr", "0"], "train.lr"),
]
KIRSCH = [
    ("ki-npy-named-npz", ["--task.dataset", "npz", "--task.dataset-path", "{files}/array.npz"],
     "array.npz"),
    ("ki-missing-npz", ["--task.dataset", "npz", "--task.dataset-path", "{files}/missing.npz"],
     "missing.npz"),
    ("ki-not-a-zip", ["--task.dataset", "npz", "--task.dataset-path", "{files}/junk.npz"],
     "junk.npz"),
    ("ki-folder-as-npz", ["--task.dataset", "npz", "--task.dataset-path", "{files}/idx"],
     "idx: is a folder"),
    ("ki-empty-idx-folder", ["--task.dataset", "idx", "--task.dataset-path", "{files}/idx"],
     "train-images-idx3-ubyte"),
    ("ki-classes-do-not-fit", ["--task.dataset", "npz", "--task.dataset-path",
                               "{files}/twelve.npz"], "task.n_classes"),
    ("ki-path-without-file-dataset", ["--task.dataset-path", "{files}/twelve.npz"],
     "task.dataset_path"),
    ("ki-max-len", ["--model.max-len", "20"], "model.max_len"),
    ("ki-read-in-width", ["--model.no-read-in"], "model.d_model"),
    ("ki-biased-nan", ["--task.biased-fraction", "nan"], "task.biased_fraction"),
    ("ki-warmup-steps-no-warmup", ["--warmup.dataset", "None", "--warmup.steps", "5"],
     "warmup.steps"),
    ("ki-pool-past-30", ["--tasks-log2", "2", "31"], "tasks_log2"),
    ("ki-comparison-seq-len", ["--sgd-comparison.seq-len", "1"], "sgd_comparison.seq_len"),
    ("ki-comparison-steps", ["--sgd-comparison.steps", "0"], "sgd_comparison.steps"),
]
BURSTY = [
    ("bu-labels", ["--format.n-labels", "16"], "format.n_labels"),
    ("bu-max-len", ["--model.max-len", "10"], "model.max_len"),
    ("bu-hidden-size", ["model:recurrent-config", "--model.hidden-size", "0"],
     "model.hidden_size"),
    ("bu-cell", ["model:recurrent-config", "--model.cell", "rnn"], "model.cell"),
    ("bu-unknown-kind", ["model:lstm"], "model:recurrent-config"),
    ("bu-kind-of-one-config", ["task:recurrent"], "task holds no choice of configs"),
    ("bu-transformer-option-on-lstm", ["model:recurrent", "--model.d-model", "8"],
     "--model.d-model"),
]
RNN_VS_TRANSFORMER = [
    ("rt-bursty-gone", ["--bursty-train.steps", "10"], "--bursty-train.steps"),
    ("rt-read-in-width", ["--transformer.no-read-in"], "transformer.d_model"),
    ("rt-nested-train-lr-inf", ["--gpicl-train.lr", "inf"], "gpicl_train.lr"),
    ("rt-max-hidden", ["--max-hidden", "0"], "max_hidden"),
    ("rt-cells", ["--cells", "rnn"], "--cells"),
    ("rt-max-len", ["--transformer.max-len", "10"], "transformer.max_len"),
]
GARG = [
    ("ga-sparsity-past-dim", ["--task.sparsity", "6"], "task.sparsity"),
    ("ga-depth-zero", ["--task.depth", "0"], "task.depth"),
    ("ga-noise-negative", ["--task.noise-std", "-1"], "task.noise_std"),
    ("ga-kappa-below-one", ["--task.condition-number", "0.5"], "task.condition_number"),
    ("ga-unknown-covariance", ["--task.covariance", "diagonal"], "--task.covariance"),
    ("ga-unknown-function", ["--functions", "quadratic"], "functions"),
    ("ga-task-function", ["--task.function", "tree"], "task.function"),
    ("ga-unknown-shift", ["--shifts", "sideways"], "shifts"),
    ("ga-shift-noise-negative", ["--shift-noise-std", "-1"], "shift_noise_std"),
    ("ga-no-tree-prompts", ["--tree-prompts", "0"], "tree_prompts"),
]
RAVENTOS = [
    ("ra-pool-size-set", ["--task.pool-size", "4"], "task.pool_size"),
    ("ra-one-pool-size", ["--pool-sizes", "16"], "pool_sizes"),
    ("ra-pool-size-zero", ["--pool-sizes", "0", "4"], "pool_sizes"),
    ("ra-noiseless", ["--task.noise-std", "0"], "task.noise_std"),
    ("ra-ill-conditioned", ["--task.x-condition", "10"], "task.x_condition"),
    ("ra-eval-prompts-zero", ["--eval-prompts", "0"], "eval_prompts"),
]
RAVENTOS_POOL = [
    ("rp-no-pool", ["--task.pool-size", "None"], "task.pool_size"),
    ("rp-max-len", ["--model.max-len", "16"], "model.max_len"),
]
RUN_CASES = [(case_id, recipe, argv, text)
             for recipe, cases in (("von-oswald", VON_OSWALD), ("reddy", REDDY),
                                   ("minegishi", MINEGISHI), ("kirsch", KIRSCH),
                                   ("rnn-vs-transformer", RNN_VS_TRANSFORMER),
                                   ("bursty", BURSTY), ("garg", GARG),
                                   ("raventos", RAVENTOS), ("raventos-pool", RAVENTOS_POOL))
             for case_id, argv, text in cases]

# Commands on prepared folders: (id, argv, text). These folders exist and must be unchanged.
FOLDER_CASES = [
    ("resume-without-out", ["run", "von-oswald", "--resume"], "--out"),
    ("resume-missing-folder", ["run", "von-oswald", "--resume", "--out", "{files}/nothing"],
     "nothing"),
    ("resume-config-not-json", ["run", "von-oswald", "--resume", "--out",
                                "{files}/config-not-json"], "config.json"),
    ("resume-config-a-list", ["run", "von-oswald", "--resume", "--out",
                              "{files}/config-a-list"], "config.json"),
    ("resume-config-no-recipe", ["run", "von-oswald", "--resume", "--out",
                                 "{files}/config-no-recipe"], "config.json"),
    ("resume-config-wrong-type", ["run", "von-oswald", "--resume", "--out",
                                  "{files}/config-wrong-type"], "config.train.lr"),
    ("resume-config-unknown-field", ["run", "von-oswald", "--resume", "--out",
                                     "{files}/config-unknown-field"], "config.train.stepz"),
    ("resume-config-inf", ["run", "von-oswald", "--resume", "--out", "{files}/config-inf"],
     "train.lr"),
    ("resume-other-recipe", ["run", "von-oswald", "--resume", "--out", "{files}/reddy-run"],
     "config.json"),
    ("resume-checkpoint-not-json", ["run", "von-oswald", "--resume", "--out",
                                    "{files}/checkpoint-not-json"], "checkpoint.npz"),
    ("resume-checkpoint-no-step", ["run", "von-oswald", "--resume", "--out",
                                   "{files}/checkpoint-no-step"], "checkpoint.npz"),
    ("resume-checkpoint-not-zip", ["run", "von-oswald", "--resume", "--out",
                                   "{files}/checkpoint-not-zip"], "checkpoint.npz"),
    ("run-into-finished-run", ["run", "von-oswald", "--out", "{files}/finished"], "finished"),
    ("run-out-under-a-file", ["run", "von-oswald", "--out", "{files}/twelve.npz/run"],
     "twelve.npz/run"),
    ("report-missing-folder", ["report", "{files}/nothing"], "nothing"),
    ("report-summary-not-json", ["report", "{files}/summary-not-json"], "summary.json"),
    ("report-summary-a-list", ["report", "{files}/summary-a-list"], "summary.json"),
    ("report-no-config", ["report", "{files}/idx"], "config.json"),
    ("report-config-no-recipe", ["report", "{files}/config-no-recipe"], "config.json"),
    ("report-results-missing", ["report", "{files}/finished"], "results.npz"),
    ("report-two-folders", ["report", "{files}/finished", "{files}/finished"], "report"),
    ("report-metric-on-a-run", ["report", "{files}/finished", "--metric", "x"], "--metric"),
    ("report-unknown-option", ["report", "{files}/finished", "--metrics", "x"], "--metrics"),
    ("compare-one-run", ["compare", "{files}/finished"], "{files}/finished"),
    ("compare-missing-folder", ["compare", "{files}/finished", "{files}/nothing"], "nothing"),
    ("compare-not-a-run", ["compare", "{files}/finished", "{files}/idx"], "idx"),
    ("compare-unfinished-run", ["compare", "{files}/finished", "{files}/reddy-run"],
     "summary.json"),
    ("unknown-command", ["frobnicate"], "frobnicate"),
    ("unknown-recipe", ["run", "no-such-recipe"], "no-such-recipe"),
    ("run-without-recipe", ["run", "--seeds", "2"], "recipe"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Dataset files and run folders, each broken in one way."""
    root = tmp_path_factory.mktemp("bad")
    np.save(root / "array.npy", np.zeros(3))
    (root / "array.npy").rename(root / "array.npz")
    (root / "junk.npz").write_bytes(b"not a zip archive")
    np.savez(root / "twelve.npz", x=np.random.default_rng(0).normal(size=(48, 5)),
             y=np.arange(48) % 12)
    (root / "idx").mkdir()
    vo = {"recipe": "von-oswald", "config": to_dict(default_config("von-oswald"))}

    def folder(name: str, **files: object) -> None:
        (root / name).mkdir()
        for file, content in files.items():
            target = root / name / file.replace("_", ".", 1)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content if isinstance(content, str) else json.dumps(content))

    folder("config-not-json", config_json='{"recipe": "von-oswald", ')
    folder("config-a-list", config_json=[1, 2])
    folder("config-no-recipe", config_json={"config": vo["config"]},
           summary_json={"headline": {}})
    wrong = json.loads(json.dumps(vo))
    wrong["config"]["train"]["lr"] = "fast"
    folder("config-wrong-type", config_json=wrong)
    unknown = json.loads(json.dumps(vo))
    unknown["config"]["train"]["stepz"] = 3
    folder("config-unknown-field", config_json=unknown)
    folder("config-inf", config_json=json.dumps(vo).replace('"lr": 0.001', '"lr": Infinity'))
    folder("reddy-run", config_json={"recipe": "reddy",
                                     "config": to_dict(default_config("reddy"))})
    folder("checkpoint-not-json", config_json=vo, checkpoint_npz=_npz_bytes(root, "{step"))
    folder("checkpoint-no-step", config_json=vo, checkpoint_npz=_npz_bytes(root, "{}"))
    folder("checkpoint-not-zip", config_json=vo, checkpoint_npz=b"truncated")
    finished = Summary(RecipeResult(headline={}, claims={}),
                       RunInfo(recipe="von-oswald", paper="", seeds=(0,), wall_time_s=1.0,
                               versions={}, device="cpu", n_devices=1))
    folder("finished", config_json=vo, summary_json=finished.to_json())
    folder("summary-not-json", config_json=vo, summary_json="{")
    folder("summary-a-list", config_json=vo, summary_json=[])
    return root


def _npz_bytes(root: Path, metadata: str) -> bytes:
    """A checkpoint archive whose stored metadata (``__metadata__``) is ``metadata``."""
    np.savez(root / "arrays.npz", a=np.zeros(2), __metadata__=np.asarray(metadata))
    return (root / "arrays.npz").read_bytes()


def _snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file under ``root`` with its bytes and modification time, and every folder;
    not a run folder's ``.lock``, which any iclab process that takes the folder rewrites
    (it holds the holder's pid, no data)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            if p.is_file() else None for p in sorted(root.rglob("*")) if p.name != ".lock"}


def _check_one_line(code: int, out: str, err: str, text: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("iclab: error: "), err
    assert text in lines[0], (text, err)
    assert "Traceback" not in err and out == "", (out, err)


@pytest.mark.parametrize(("recipe", "argv", "text"),
                         [case[1:] for case in RUN_CASES], ids=[case[0] for case in RUN_CASES])
def test_bad_run_option_fails_in_one_line_before_any_work(recipe, argv, text, files, tmp_path,
                                                          capsys):
    out = tmp_path / "run"
    argv = [arg.format(files=files) for arg in argv]
    before = _snapshot(files)
    code = main(["run", recipe, "--out", str(out), "--no-progress", *argv])
    captured = capsys.readouterr()
    _check_one_line(code, captured.out, captured.err, text.format(files=files))
    assert not out.exists()
    assert _snapshot(files) == before


@pytest.mark.parametrize(("argv", "text"), [case[1:] for case in FOLDER_CASES],
                         ids=[case[0] for case in FOLDER_CASES])
def test_bad_folder_or_command_fails_in_one_line_and_changes_nothing(argv, text, files,
                                                                     capsys):
    argv = [arg.format(files=files) for arg in argv]
    before = _snapshot(files)
    code = main(argv)
    captured = capsys.readouterr()
    _check_one_line(code, captured.out, captured.err, text.format(files=files))
    assert _snapshot(files) == before
    assert not (files / "nothing").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_unreadable_dataset_file_names_it(files, tmp_path, capsys):
    path = tmp_path / "locked.npz"
    path.write_bytes((files / "twelve.npz").read_bytes())
    path.chmod(0)
    try:
        code = main(["run", "kirsch", "--out", str(tmp_path / "run"), "--task.dataset", "npz",
                     "--task.dataset-path", str(path)])
    finally:
        path.chmod(0o600)
    captured = capsys.readouterr()
    _check_one_line(code, captured.out, captured.err, "locked.npz: cannot be read")
    assert not (tmp_path / "run").exists()


def test_unwritable_run_folder_names_it(tmp_path, capsys):
    """A run folder that cannot be created (here: a file stands in its path) is a user
    error naming the folder, before anything compiles."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["run", "von-oswald", "--out", str(blocker / "run"), "--no-progress"])
    captured = capsys.readouterr()
    _check_one_line(code, captured.out, captured.err, str(blocker / "run"))


def test_probe_count():
    """The issue asks for at least 40 bad inputs across the five recipes."""
    assert len(RUN_CASES) + len(FOLDER_CASES) >= 40
    assert {case[1] for case in RUN_CASES} == {"von-oswald", "reddy", "minegishi", "kirsch",
                                                "rnn-vs-transformer", "bursty", "garg",
                                                "raventos", "raventos-pool"}


@pytest.mark.parametrize("argv", [
    ["run", "von-oswald", "--train.lr", "inf"],
    ["run", "kirsch", "--task.dataset", "npz", "--task.dataset-path", "{files}/array.npz"],
], ids=["option", "dataset-file"])
def test_shell_sees_status_2_and_one_line(argv, files, tmp_path):
    out = tmp_path / "run"
    argv = [arg.format(files=files) for arg in argv]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}  # this checkout
    result = subprocess.run([sys.executable, "-m", "iclab", *argv[:2], "--out", str(out),
                             *argv[2:]], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env=env)
    _check_one_line(result.returncode, result.stdout, result.stderr,
                    "train.lr" if "--train.lr" in argv else "array.npz")
    assert not out.exists()
