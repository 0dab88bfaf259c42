"""Bad input never hangs, never prints a traceback, never writes: every command (search, train,
eval, analyze, zoo) refuses it with exit code 2 and one line naming the option, the value and
what is allowed, before ``--out`` exists or Ray starts.

The matrix runs as the real command line in ONE fresh process (this file run as a script: it
calls ``raygan.cli.main`` once per case), capturing each case's file descriptors 1 and 2
(Python's and C's writes alike, nothing ignored), with an alarm per case so that a hang fails
that case, ``ray.init`` replaced by an error (a case that reaches Ray was not validated) and
the files under the temporary folder compared before and after each case (nothing created,
changed or removed). A few cases also run as separate processes through the ``raygan`` script,
to prove its exit code and single line from the outside.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CASE_TIMEOUT_S = 30
"""A case still running after this is a hang (a case takes well under a second)."""

MATRIX_TIMEOUT_S = 300
"""The whole matrix, in its one process (imports included: about 10 s on an idle machine)."""

NUMBERS = ("nan", "inf", "-inf", "-5")
"""Refused by every numeric option of every command (no option allows less than -1)."""

IN = "{in}"
"""Stands for the folder of prepared inputs (genotype files, checkpoints, states)."""


TRAIN = "train --arch eagan_cifar10"
EAGAN = "search eagan --out out-eagan"

# fmt: off
LISTED = [  # (name, command line, what its one line must contain)
    # reported: a resource request this machine cannot give (Ray would wait for it forever)
    ("train-gpus-no-gpu", f"{TRAIN} --gpus 0.3",
     "--gpus given but this machine has no CUDA GPU: 0.3 per trial"),
    ("search-gpus-no-gpu", f"{EAGAN} --gpus 0.3",
     "--gpus given but this machine has no CUDA GPU: 0.3 per trial"),
    ("train-checkpoint-every-negative", f"{TRAIN} --checkpoint-every -5",
     "--checkpoint-every must be a whole number >= 0, got -5"),
    ("train-cpus-too-many", f"{TRAIN} --cpus 1000", "--cpus 1000 per trial, but this machine has"),
    ("search-cpus-too-many", "search autogan --out o --cpus 1000",
     "--workers 1 x --cpus 1000 needs 1000 CPUs"),
    ("search-gpus-too-many", "search adversarialnas --out o --gpus 64", "--gpus "),
    ("train-gpus-fraction-above-1", f"{TRAIN} --gpus 1.5", "--gpus above 1 must be a whole number"),
    ("train-cpus-below-ray-step", f"{TRAIN} --cpus 0.00001", "--cpus must be 0 or at least 0.0001"),
    # reported: tracebacks
    ("train-width-scale-inf", f"{TRAIN} --width-scale inf",
     "--width-scale must be a finite number above 0, got inf"),
    ("train-gpus-inf", f"{TRAIN} --gpus inf", "--gpus must be a finite number >= 0, got inf"),
    ("genotype-gf-list", "train --genotype-file {in}/gf-list.yaml",
     "gf must be a whole number >= 1, got [1, 2]"),
    ("resume-truncated-state", "search eagan --out {in}/cut --resume",
     "--resume: cannot read the search state: {in}/cut/search_state.json is not JSON"),
    ("resume-foreign-state", "search autogan --out {in}/foreign --resume",
     "is not a raygan.state/1 document"),
    ("resume-nothing", "search eagan --out nothing-here --resume",
     "--resume: nothing to resume in nothing-here"),
    ("eval-config-not-json", "eval {in}/ckpt-json", "config.json is not JSON"),
    # reported: --eval-samples has one lower bound in every command
    ("search-eval-samples-5", f"{EAGAN} --eval-samples 5",
     "--eval-samples must be a whole number >= 10, got 5"),
    ("train-eval-samples-5", f"{TRAIN} --eval-samples 5",
     "--eval-samples must be a whole number >= 10, got 5"),
    ("eval-eval-samples-5", "eval {in}/ckpt-zero --eval-samples 5",
     "--eval-samples must be a whole number >= 10, got 5"),
    # numbers (nan, inf, -inf and -5 of every option: numeric_cases)
    ("train-steps-fraction", f"{TRAIN} --steps 1.5",
     "--steps must be a whole number >= 1, got '1.5'"),
    ("train-seed-too-big", f"{TRAIN} --seed 4294967296",
     "--seed must be a whole number from 0 to 4294967295, got 4294967296"),
    ("search-population-text", f"{EAGAN} --population six",
     "--population must be a whole number >= 4, got 'six'"),
    ("search-population-odd", f"{EAGAN} --population 5", "--population must be even"),
    ("search-lr-zero", f"{EAGAN} --s2-lr 0", "--s2-lr must be a number above 0, got 0.0"),
    ("search-grow-at", "search autogan --out o --grow-at 4,2", "--grow-at must be two iterations"),
    ("search-batch-workers", "search adversarialnas --out o --batch 6",
     "--batch 6 must split into an even share per worker"),
    # names, choices, unknown options
    ("train-unknown-arch", "train --arch nope", "--arch: unknown arch 'nope'"),
    ("train-no-arch", "train", "give exactly one of --arch NAME or --genotype-file PATH"),
    ("train-both-archs", f"{TRAIN} --genotype-file {{in}}/gf-list.yaml",
     "give exactly one of --arch NAME or --genotype-file PATH"),
    ("train-unknown-dataset", f"{TRAIN} --dataset imagenet",
     "--dataset: invalid choice: 'imagenet'"),
    ("eval-unknown-dataset", "eval {in}/ckpt-zero --dataset imagenet",
     "--dataset: invalid choice: 'imagenet'"),
    ("search-unknown-strategy", "search darts", "invalid choice: 'darts'"),
    ("search-unknown-preset", "search eagan --preset huge", "--preset: invalid choice: 'huge'"),
    ("search-keep-weights", f"{EAGAN} --keep-weights some",
     "--keep-weights: invalid choice: 'some'"),
    ("train-unknown-option", f"{TRAIN} --stpes 3", "unrecognized arguments: --stpes"),
    ("train-missing-value", f"{TRAIN} --steps", "--steps: expected one argument"),
    ("zoo-extra-argument", "zoo --json extra", "unrecognized arguments: extra"),
    ("analyze-no-path", "analyze", "the following arguments are required: path"),
    ("no-command", "", "the following arguments are required: command"),
    # data, metric weights, storage
    ("train-cifar-missing", f"{TRAIN} --dataset cifar10 --data-root nowhere",
     "--dataset cifar10: CIFAR-10 not found: expected"),
    ("search-cifar-missing", f"{EAGAN} --dataset cifar10 --data-root nowhere",
     "--dataset cifar10: CIFAR-10 not found: expected"),
    ("search-folder-without-root", f"{EAGAN} --dataset folder",
     "--dataset folder: folder dataset needs root="),
    ("train-inception-weights-missing", f"{TRAIN} --inception-weights no-such.pth",
     "--inception-weights no-such.pth: no such file"),
    ("search-inception-weights-missing", f"{EAGAN} --inception-weights no-such.pth",
     "--inception-weights no-such.pth: no such file"),
    ("eval-inception-weights-missing", "eval {in}/ckpt-zero --inception-weights no-such.pth",
     "--inception-weights no-such.pth: no such file"),
    ("search-out-is-a-file", "search eagan --out {in}/a-file",
     "--out: cannot write to storage {in}/a-file"),
    ("train-out-unknown-scheme", f"{TRAIN} --out nope://x/y",
     "--out: cannot write to storage nope://x/y"),
    # genotype files: unknown keys, wrong spaces, bad widths, not a genotype file at all
    ("genotype-unknown-key", "train --genotype-file {in}/unknown-key.yaml",
     "unknown key 'width'; allowed: g, d, gf, df, bottom_width, latent_chunks"),
    ("genotype-g-is-a-d", "train --genotype-file {in}/g-is-d.yaml",
     "g must be a generator genotype"),
    ("genotype-d-is-a-g", "train --genotype-file {in}/d-is-g.yaml",
     "d must be a discriminator genotype"),
    ("genotype-unknown-space", "train --genotype-file {in}/no-space.yaml",
     "unknown search space 'darts_g'"),
    ("genotype-bad-genes", "train --genotype-file {in}/bad-genes.yaml",
     "cell 1: genes 2 (n0_n2), 3 (n1_n2) are all 'none'"),
    ("genotype-gf-zero", "train --genotype-file {in}/gf-zero.yaml",
     "gf must be a whole number >= 1, got 0"),
    ("genotype-df-fraction", "train --genotype-file {in}/df-fraction.yaml",
     "df must be a whole number >= 1, got 3.5"),
    ("genotype-gf-bool", "train --genotype-file {in}/gf-bool.yaml",
     "gf must be a whole number >= 1, got True"),
    ("genotype-bottom-width", "train --genotype-file {in}/bottom-width.yaml",
     "bottom_width must be a whole number >= 1, got -4"),
    ("genotype-latent-chunks", "train --genotype-file {in}/chunks.yaml",
     "latent_chunks must be one of 1, 2, 3, got 4"),
    ("genotype-latent-chunks-autogan", "train --genotype-file {in}/chunks-ag.yaml",
     "latent_chunks is for nas_cell_g generators only"),
    ("genotype-g-not-text", "train --genotype-file {in}/g-list.yaml",
     "g must be a genotype string"),
    ("genotype-missing-d", "train --genotype-file {in}/missing-d.yaml",
     "needs keys g and d (and gf, df); d is missing"),
    ("genotype-not-yaml", "train --genotype-file {in}/not-yaml.yaml", "not valid YAML"),
    ("genotype-a-list", "train --genotype-file {in}/a-list.yaml",
     "must be a YAML mapping of g, d, gf, df, bottom_width, latent_chunks, got list"),
    ("genotype-empty", "train --genotype-file {in}/empty.yaml", "must be a YAML mapping"),
    ("genotype-missing-file", "train --genotype-file no-such.yaml",
     "--genotype-file no-such.yaml: cannot read it"),
    ("genotype-a-folder", "train --genotype-file {in}", "--genotype-file {in}: cannot read it"),
    # eval: what a checkpoint needs, local and by URI
    ("eval-nowhere", "eval nowhere", "checkpoint nowhere is not a raygan checkpoint"),
    ("eval-pruned", "eval {in}/ckpt-pruned", "no longer holds its weights (state.pt)"),
    ("eval-pruned-uri", "eval file://{in}/ckpt-pruned", "no longer holds its weights (state.pt)"),
    ("eval-trial-folder", "eval {in}/trial",
     "is a trial folder; give one of its checkpoints: {in}/trial/checkpoint_000001"),
    ("eval-no-config", "eval {in}/ckpt-no-config", "not a raygan checkpoint (no config.json"),
    ("eval-config-a-list", "eval {in}/ckpt-list", "config.json is not a trial config"),
    ("eval-config-bad-genotype", "eval {in}/ckpt-genotype", "config.json describes no G/D pair"),
    ("eval-config-bad-width", "eval {in}/ckpt-width",
     "config.json gf must be a whole number >= 1, got 'wide'"),
    ("eval-config-dataset", "eval {in}/ckpt-dataset",
     "its config.json names dataset 'imagenet'; pass --dataset"),
    ("eval-state-cut", "eval {in}/ckpt-cut", "state.pt cannot be read"),
    ("eval-state-no-generator", "eval {in}/ckpt-step-only",
     "state.pt holds no generator weights (G_ema or G); it holds: step"),
    ("eval-state-other-arch", "eval {in}/ckpt-other",
     "its state.pt does not fit the generator its config.json describes"),
    ("eval-uri-unknown-scheme", "eval nope://bucket/ckpt",
     "checkpoint nope://bucket/ckpt: cannot read it"),
    # a usable zero-step checkpoint (G_ema only) read through a URI: refused only for the
    # reference data it is asked to compare with
    ("eval-zero-step-uri-data-missing",
     "eval file://{in}/ckpt-zero --dataset cifar10 --data-root nowhere",
     "--dataset cifar10: CIFAR-10 not found"),
]
# fmt: on


@functools.cache
def cases() -> tuple[tuple[str, tuple[str, ...], str], ...]:
    """(name, argv, what the one line must contain): :data:`LISTED`, then every numeric
    option of every command with each of :data:`NUMBERS`."""
    listed = [(name, tuple(line.split()), expected) for name, line, expected in LISTED]
    return (*listed, *numeric_cases())


def numeric_options() -> list[tuple[list[str], str]]:
    """(command words, flag) of every option that takes a number, in every command."""
    from raygan.cli import build_parser

    found = []

    def walk(parser, words):
        for action in parser._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):  # subcommands
                for name, sub in action.choices.items():
                    walk(sub, [*words, name])
            elif getattr(action.type, "__name__", None) in ("int", "float"):
                found.append((words, action.option_strings[0]))

    walk(build_parser(), [])
    return found


REQUIRED = {"train": TRAIN.split()[1:], "eval": [f"{IN}/ckpt-zero"], "search": ["--out", "o"]}


def numeric_cases() -> list[tuple[str, list[str], str]]:
    out = []
    for words, flag in numeric_options():
        extra = REQUIRED.get(words[0], [])
        for value in NUMBERS:
            name = " ".join([*words, f"{flag}={value}"])
            out.append((name, (*words, *extra, f"{flag}={value}"), flag))
    return out


# ----- the prepared inputs ----------------------------------------------------------------------
NAS_G = "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3"
"""EAGAN's published generator (zoo eagan_cifar10)."""


def make_inputs(root: Path) -> None:
    """Genotype files, checkpoints and search states, each bad in one way (and one good
    zero-step checkpoint), under ``root``."""
    import torch

    from raygan import state
    from raygan.trainable import build_pair, full_config

    root.mkdir()
    files = {
        "gf-list.yaml": f'g: "{NAS_G}"\nd: "autogan_d:"\ngf: [1, 2]\n',
        "unknown-key.yaml": f'g: "{NAS_G}"\nd: "autogan_d:"\nwidth: 64\n',
        "g-is-d.yaml": 'g: "autogan_d:"\nd: "autogan_d:"\n',
        "d-is-g.yaml": f'g: "{NAS_G}"\nd: "{NAS_G}"\n',
        "no-space.yaml": 'g: "darts_g:1,2"\nd: "autogan_d:"\n',
        "bad-genes.yaml": 'g: "nas_cell_g:1,1,0,0,3,3,1/1,1,0,1,3,3,3/0,1,0,3,3,0,3"\n'
        'd: "autogan_d:"\n',
        "gf-zero.yaml": f'g: "{NAS_G}"\nd: "autogan_d:"\ngf: 0\n',
        "df-fraction.yaml": f'g: "{NAS_G}"\nd: "autogan_d:"\ndf: 3.5\n',
        "gf-bool.yaml": f'g: "{NAS_G}"\nd: "autogan_d:"\ngf: true\n',
        "bottom-width.yaml": f'g: "{NAS_G}"\nd: "autogan_d:"\nbottom_width: -4\n',
        "chunks.yaml": f'g: "{NAS_G}"\nd: "autogan_d:"\nlatent_chunks: 4\n',
        "chunks-ag.yaml": 'g: "autogan:1,0,1,1/1,0,0,1,1/1,0,1,0,3"\nd: "autogan_d:"\n'
        "latent_chunks: 2\n",
        "g-list.yaml": 'g: [1, 2]\nd: "autogan_d:"\n',
        "missing-d.yaml": f'g: "{NAS_G}"\n',
        "not-yaml.yaml": 'g: "unclosed\nd: [\n',
        "a-list.yaml": "- 1\n- 2\n",
        "empty.yaml": "",
        "a-file": "not a folder\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)

    # search states: one cut short, one of another format
    (root / "cut").mkdir()
    state.save(str(root / "cut" / "search_state.json"), {"generation": 3, "settings": {}})
    text = (root / "cut" / "search_state.json").read_text()
    (root / "cut" / "search_state.json").write_text(text[: len(text) // 2])
    (root / "foreign").mkdir()
    (root / "foreign" / "search_state.json").write_text('{"format": "other/9", "data": {}}')

    # checkpoints
    config = full_config({"g": NAS_G, "d": "autogan_d:", "gf": 8, "df": 8, "dataset": "shapes"})
    generator, _ = build_pair(config)
    other, _ = build_pair({**config, "gf": 16})

    def checkpoint(name, config_text=None, state_obj=None, state_bytes=None):
        folder = root / name
        folder.mkdir(parents=True)
        if config_text is not None:
            (folder / "config.json").write_text(config_text)
        if state_obj is not None:
            torch.save(state_obj, folder / "state.pt")
        if state_bytes is not None:
            (folder / "state.pt").write_bytes(state_bytes)

    good = json.dumps(config)
    zero_step = {"G_ema": generator.state_dict(), "step": 0}
    checkpoint("ckpt-zero", good, zero_step)  # what a zero-step trial keeps: usable
    checkpoint("ckpt-pruned", good)
    checkpoint("ckpt-no-config", state_obj=zero_step)
    checkpoint("ckpt-json", '{"g": "nas_cell_g:', zero_step)
    checkpoint("ckpt-list", "[1, 2]", zero_step)
    checkpoint("ckpt-genotype", json.dumps({**config, "g": "nas_cell_g:9"}), zero_step)
    checkpoint("ckpt-width", json.dumps({**config, "gf": "wide"}), zero_step)
    checkpoint("ckpt-dataset", json.dumps({**config, "dataset": "imagenet"}), zero_step)
    checkpoint("ckpt-cut", good, state_bytes=(root / "ckpt-zero" / "state.pt").read_bytes()[:999])
    checkpoint("ckpt-step-only", good, {"step": 3})
    checkpoint("ckpt-other", good, {"G_ema": other.state_dict(), "step": 0})
    checkpoint("trial/checkpoint_000000", good)
    checkpoint("trial/checkpoint_000001", good)


# ----- the driver: this file run as a script ----------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size and modification time."""
    seen = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            seen[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return seen


def drive(cases_file: str, results_file: str) -> None:
    """Run every case of ``cases_file`` through ``raygan.cli.main`` in this process (cwd: the
    folder under test), writing ``{name: {code, output, changed}}`` to ``results_file``."""
    import faulthandler
    import signal
    import tempfile
    import traceback
    import warnings

    faulthandler.dump_traceback_later(MATRIX_TIMEOUT_S, exit=True)  # the backstop
    warnings.simplefilter("always")  # a warning shows in every case that causes it
    todo = json.loads(Path(cases_file).read_text())
    root = Path.cwd()

    class Hang(BaseException):
        pass

    def alarm(signum, frame):
        raise Hang

    signal.signal(signal.SIGALRM, alarm)

    def captured(work):
        """Run ``work()``; its exit code (or what went wrong) and everything written to fd 1
        and fd 2 meanwhile."""
        with tempfile.TemporaryFile() as sink:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                signal.alarm(CASE_TIMEOUT_S)
                try:
                    code = work()
                except SystemExit as err:
                    code = err.code
                except Hang:
                    code = "hang"
                except BaseException:
                    traceback.print_exc()
                    code = "traceback"
                finally:
                    signal.alarm(0)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
            sink.seek(0)
            return code, sink.read().decode(errors="replace")

    def imports():
        import ray

        from raygan import cli

        def refuse(*args, **kwargs):
            raise RuntimeError("ray.init was called: this input reached Ray unchecked")

        ray.init = refuse
        cli.build_parser()
        return 0

    results = {"<imports>": dict(zip(("code", "output"), captured(imports), strict=True))}
    from raygan.cli import main

    for name, argv in todo:
        before = snapshot(root)
        code, output = captured(lambda argv=argv: main(argv))
        after = snapshot(root)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        results[name] = {"code": code, "output": output, "changed": changed}
    Path(results_file).write_text(json.dumps(results))


if __name__ == "__main__":
    drive(*sys.argv[1:3])


# ----- the tests --------------------------------------------------------------------------------
def cli_env() -> dict[str, str]:
    """This machine as a user without a GPU, a cluster or Inception weights has it, running
    this checkout's raygan."""
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    env["CUDA_VISIBLE_DEVICES"] = ""  # "no GPU" cases hold on a GPU machine too
    for name in ("RAY_ADDRESS", "RAYGAN_INCEPTION_WEIGHTS"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The folder the commands run in (their cwd), with the prepared inputs in ``in``."""
    root = tmp_path_factory.mktemp("bad-input")
    make_inputs(root / "in")
    return root


@pytest.fixture(scope="module")
def matrix(folder, tmp_path_factory):
    """Every case's result, from one process running them all."""
    work = tmp_path_factory.mktemp("bad-input-driver")
    todo = [(name, [a.replace(IN, str(folder / "in")) for a in argv]) for name, argv, _ in cases()]
    (work / "cases.json").write_text(json.dumps(todo))
    subprocess.run(
        [sys.executable, __file__, str(work / "cases.json"), str(work / "results.json")],
        cwd=folder,
        env=cli_env(),
        timeout=MATRIX_TIMEOUT_S + 30,
        check=True,
    )
    return json.loads((work / "results.json").read_text())


def test_importing_the_command_line_prints_nothing(matrix):
    assert matrix["<imports>"] == {"code": 0, "output": ""}


@pytest.mark.parametrize(("name", "argv", "expected"), cases(), ids=[c[0] for c in cases()])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(matrix, folder, name, argv, expected):
    result = matrix[name]
    expected = expected.replace(IN, str(folder / "in"))
    lines = result["output"].splitlines()
    assert result["code"] == 2, result
    assert len(lines) == 1, result["output"]
    assert lines[0].startswith("raygan") and ": error: " in lines[0], lines[0]
    assert expected in lines[0], lines[0]
    assert result["changed"] == [], result["changed"]


SCRIPT_CASES = [
    (["train", "--arch", "eagan_cifar10", "--checkpoint-every", "-5"], "--checkpoint-every"),
    (["search", "eagan", "--out", "out-x", "--gpus", "0.3"], "--gpus given but"),
]
"""Two reported hangs; every process imports torch and Ray (seconds each)."""


def test_the_raygan_script_exits_2_with_one_line(folder):
    """The installed console script, one process per case (run at once), from outside."""
    script = shutil.which("raygan")
    command = [script] if script else [sys.executable, "-m", "raygan.cli"]
    before = snapshot(folder)
    runs = [
        subprocess.Popen(
            [*command, *(a.replace(IN, str(folder / "in")) for a in argv)],
            cwd=folder,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for argv, _ in SCRIPT_CASES
    ]
    for run, (_, expected) in zip(runs, SCRIPT_CASES, strict=True):
        output = run.communicate(timeout=120)[0].decode()
        assert run.returncode == 2, output
        assert len(output.splitlines()) == 1 and expected in output, output
    assert snapshot(folder) == before


def test_the_smallest_eval_samples_is_the_metrics_own():
    from raygan import metrics
    from raygan.strategies.options import EVAL_SAMPLES_MIN

    assert metrics.ISC_SPLITS == EVAL_SAMPLES_MIN


def copy_to(uri: str, folder: Path) -> None:
    from raygan import storage

    for file in folder.iterdir():
        storage.write_bytes(storage.join(uri, file.name), file.read_bytes())


@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_eval_scores_a_zero_step_checkpoint_read_through_a_uri(
    folder, monkeypatch, capsys, request, scheme
):
    """A zero-step trial keeps only G_ema: that is all eval needs. Its weights, read through
    a URI (s3:// as a cluster's checkpoints are, on a local moto server), are the ones scored
    (metrics replaced: the real ones are test_cli's); a pruned one there is one line."""
    import torch

    from raygan import cli, metrics, storage

    local = folder / "in" / "ckpt-zero"
    if scheme == "file":
        uri, pruned = f"file://{local}", f"file://{folder / 'in' / 'ckpt-pruned'}"
    else:
        base = request.getfixturevalue("s3_uri")
        uri, pruned = storage.join(base, "zero"), storage.join(base, "pruned")
        copy_to(uri, local)
        copy_to(pruned, folder / "in" / "ckpt-pruned")
    saved = torch.load(local / "state.pt", weights_only=True)["G_ema"]
    scored = {}

    def evaluate(generator, **kwargs):
        scored.update(generator.state_dict())
        return {"is": 1.0, "fid": 2.0, "num_samples": kwargs["num_samples"]}

    monkeypatch.setattr(metrics, "evaluate", evaluate)
    assert cli.main(["eval", uri, "--eval-samples", "10"]) == 0
    assert json.loads(capsys.readouterr().out)["num_samples"] == 10
    assert scored.keys() == saved.keys()
    assert all(torch.equal(scored[k].cpu(), saved[k]) for k in saved)
    assert cli.main(["eval", pruned]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"checkpoint {pruned} no longer holds its weights" in err


def test_storage_that_never_answers_is_one_line_not_a_hang():
    import threading

    from raygan import storage
    from raygan.errors import UsageError

    never = threading.Event()
    with pytest.raises(UsageError, match="checkpoint s3://b/x: no answer from its storage"):
        storage.within(0.2, "checkpoint s3://b/x", never.wait)
    assert storage.within(5, "x", lambda: 3) == 3
    with pytest.raises(KeyError):
        storage.within(5, "x", lambda: {}["k"])
