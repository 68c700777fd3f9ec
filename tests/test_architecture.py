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
