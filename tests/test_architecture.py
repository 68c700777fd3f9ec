"""The layers docs/architecture.md describes hold: import-linter checks pyproject's contracts over every import,
those inside functions too, and the check bites on a copy of the package with one import turned upwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.farm_parts import ROOT


def lint_imports(project: os.PathLike) -> subprocess.CompletedProcess:
    """`lint-imports` (import-linter, a test extra) with the project's contracts, over the packages in `project`."""
    binary = shutil.which("lint-imports", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    assert binary, "lint-imports: not installed; `pip install -e '.[test]'` installs import-linter"
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run([binary, str(ROOT / "pyproject.toml"), "--no-cache"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_layer_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout and "Contracts: 5 kept, 0 broken" in result.stdout, result.stdout


def test_an_import_from_the_core_up_into_operations_breaks_the_layers(tmp_path):
    for package in ("farm", "workers"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.safetensors", "__pycache__"))
    spec = tmp_path / "farm/core/spec.py"
    spec.write_text(spec.read_text() + "\n\ndef _upwards():\n    from farm.ops import shard  # a function-level import counts too\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "farm.core.spec -> farm.ops.shard" in result.stdout, result.stdout


def test_a_command_checks_its_arguments_without_loading_torch(tmp_path):
    """The spec, the presets and the zoo's catalogue are torch-free, so a mistyped `farm generate` is refused
    before torch loads (a second, not six): its pool's own fields are checked before the generation's family is
    read from the registry."""
    probe = ("import sys; from farm.cli import main; sys.argv = ['farm', 'generate', '--pool', 'p', '--count', '4', "
             "'--scheme', 'nope']\ntry:\n    main()\nexcept SystemExit as e:\n"
             "    print(e.code, sorted(m for m in ('torch', 'skimage', 'scipy') if m in sys.modules))")
    env = {**os.environ, "FARM_STORE": (tmp_path / "store").as_uri()}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert "Error: scheme: unknown scheme 'nope'" in result.stderr, result.stderr
    assert result.stdout.split() == ["1", "[]"], result.stdout + result.stderr
    assert not (tmp_path / "store").exists()
