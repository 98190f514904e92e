"""The package on its own: installed (not editable) outside the checkout, `rem_tf.experiment`
has its default config and `rem-tf` / `python -m rem_tf` their flags; nothing of the
checkout (configs/, tests/) comes with it."""

import os
import shutil
import subprocess
import sys

import pytest

from test_run_common import REPO, config_file


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`pip install --no-deps --target` of a copy of the package's sources: the target."""
    pytest.importorskip("setuptools", reason="building the package needs setuptools")
    source, target = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("target")
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "rem_tf", source / "rem_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target


def _run(command, target, cwd):
    env = dict(os.environ, PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)


def test_installed_package_has_its_default_config_and_no_checkout(installed, tmp_path):
    proc = _run([sys.executable, "-c", "import rem_tf.experiment as e, importlib.util as u; "
                 "print(e.__file__); print(e.default_config().to_json()); "
                 "print([u.find_spec(n) for n in ('configs', 'tests', 'experiments')])"],
                installed, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, config, others = proc.stdout.strip().splitlines()[-3:]
    assert where.startswith(str(installed))  # the installed copy, not the checkout
    assert config == config_file("default").to_json()  # = configs/default.py of the checkout
    assert others == "[None, None, None]"


@pytest.mark.parametrize("entry", ["rem-tf", "python -m rem_tf"])
def test_installed_command_line_lists_the_flags_and_no_testing_flag(entry, installed, tmp_path):
    command = ([str(installed / "bin" / "rem-tf")] if entry == "rem-tf"
               else [sys.executable, "-m", "rem_tf"])
    proc = _run([*command, "--help"], installed, tmp_path)  # absl's help: exit status 1
    assert "Try --helpfull" in proc.stdout, proc.stderr[-3000:]
    for flag in ("--config", "--method", "--dataset", "--workdir", "--epochs", "--mode",
                 "--saved_model", "--preset"):
        assert flag in proc.stdout, (flag, proc.stdout[-3000:])
    assert "testing" not in proc.stdout
    if entry != "rem-tf":
        return
    # and it runs: a bad flag is one line and status 2, before any work
    bad = _run([*command, "--method=bogus", f"--workdir={tmp_path / 'run'}"], installed,
               tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: unknown method 'bogus'"), bad.stderr[-3000:]
    assert not (tmp_path / "run").exists()
