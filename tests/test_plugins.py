"""Scheme plugins: a package installed with an entry point in captchafarm.schemes adds a scheme to farm.

The example plugin (examples/captchafarm-dotted) is installed for real, with pip, offline, into a
folder of its own that the `farm` subprocesses get on PYTHONPATH; the main environment never sees it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from farm.core.charset import DEFAULT_ALPHABET
from farm.exceptions import SchemeError
from farm.core.schemes import Scheme, captcha_seed, check_scheme
from tests.conftest import farm_env

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "captchafarm-dotted"
DOTTED = {"alphabet": "abcdefghjkmnpqrstuvwxyz23456789", "lengths": [5, 6], "width": 180, "height": 56,
          "source": "captchafarm-dotted 0.1.0", "entry_point": "captchafarm_dotted:DottedScheme", "error": None}


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """A folder holding the example plugin as pip installs it (dist-info with its entry points)."""
    base = tmp_path_factory.mktemp("plugin")
    # built from a copy: setuptools leaves build/ and *.egg-info next to the sources it builds
    source = shutil.copytree(EXAMPLE, base / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "--quiet", "--target", str(base / "site"), str(source)],
                   check=True, capture_output=True, text=True, timeout=120)
    return base / "site"


@pytest.fixture
def dotted(plugin_site, monkeypatch):
    """The installed plugin's scheme, imported in this process (not registered here)."""
    monkeypatch.syspath_prepend(str(plugin_site))
    from captchafarm_dotted import DottedScheme
    return DottedScheme()


def run(tmp_path, *args, site: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`farm ...` or `python ...` with `site` on PYTHONPATH, storing under tmp_path."""
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    command = [sys.executable, *args[1:]] if args[0] == "python" else list(args)
    return subprocess.run(command, env=farm_env(tmp_path, PYTHONPATH=path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout)


def listed(tmp_path, site: Path) -> dict[str, dict]:
    result = run(tmp_path, "farm", "schemes", "--json", site=site)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_installed_plugin_is_listed_with_its_alphabet_size_and_source(plugin_site, tmp_path):
    rows = listed(tmp_path, plugin_site)
    assert {k: rows["dotted"][k] for k in DOTTED} == DOTTED
    assert {"classic", "lines", "wave"} <= set(rows)
    assert rows["classic"]["source"] == "built-in" and rows["classic"]["alphabet"] == DEFAULT_ALPHABET
    text = run(tmp_path, "farm", "schemes", site=plugin_site).stdout
    assert "dotted" in text and "180x56" in text and DOTTED["alphabet"] in text and "captchafarm-dotted 0.1.0" in text


def test_plugin_renders_identical_bytes_in_another_process(plugin_site, dotted, tmp_path):
    code = ("import hashlib; from farm.core.schemes import get_scheme; s = get_scheme('dotted');"
            "print(hashlib.sha256(b''.join(s.sample(i).image.tobytes() + s.sample(i).mask.tobytes() "
            "for i in range(20))).hexdigest())")
    there = run(tmp_path, "python", "-c", code, site=plugin_site)
    assert there.returncode == 0, there.stderr
    here = hashlib.sha256(b"".join(dotted.sample(i).image.tobytes() + dotted.sample(i).mask.tobytes()
                                   for i in range(20))).hexdigest()
    assert there.stdout.strip() == here


def test_dotted_same_seed_gives_identical_bytes_and_its_mask_covers_the_glyphs(dotted):
    a, b, c = dotted.render("ab3de", 7), dotted.render("ab3de", 7), dotted.render("ab3de", 8)
    assert a.image.tobytes() == b.image.tobytes() and (a.mask == b.mask).all()
    assert a.image.tobytes() != c.image.tobytes()
    for seed in range(20):
        captcha = dotted.sample(captcha_seed(1, seed))
        image, mask = captcha.image.astype(float), captcha.mask
        assert set(captcha.text) <= set(DOTTED["alphabet"]) and 5 <= len(captcha.text) <= 6
        background = np.median(image[~binary_dilation(mask, iterations=3)])
        ink = np.abs(image - background)
        assert ink[mask].mean() > 40, f"seed {seed}: mask pixels look like background"
        cols = np.flatnonzero(mask.any(0))
        assert cols[-1] - cols[0] > dotted.width * 0.5, f"seed {seed}: the mask spans a fragment of the text"
        assert not (mask & ~binary_dilation(ink > 25, iterations=2)).any(), f"seed {seed}: mask far from ink"
    with pytest.raises(ValueError, match="'A'"):
        dotted.render("Ab3de", 1)  # the plugin's alphabet, not the default one


def _checkpoint(folder: Path, alphabet: str) -> Path:
    """An untrained substitute reading `alphabet`: enough to drive an attack end to end."""
    import torch

    from farm.core.charset import Charset
    from farm.core.checkpoint import save_solver_dir
    from farm.core.model import CRNN, CRNNConfig

    torch.manual_seed(0)
    save_solver_dir(CRNN(CRNNConfig(num_classes=len(alphabet) + 1)), Charset(alphabet, 4, 6), folder)
    return folder


def test_generate_makes_a_pool_of_the_plugin_scheme(plugin_site, tmp_path):
    checkpoint = _checkpoint(tmp_path / "sub", DOTTED["alphabet"])
    result = run(tmp_path, "farm", "generate", "--pool", "dots", "--scheme", "dotted", "--count", "8", "--steps", "2",
                 "--mask", "full", "--checkpoint", str(checkpoint), "--json", site=plugin_site, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["count"] == 8
    pool = tmp_path / "store" / "pools" / "dots"
    assert json.loads((pool / "manifest.json").read_text())["spec"]["scheme"] == "dotted"
    images = sorted((pool / "images").glob("*.png"))
    assert len(images) == 8 and all(Image.open(p).size == (180, 56) for p in images)
    answers = [json.loads(line)["answer"] for keys in (pool / "keys").glob("*.jsonl") for line in keys.open()]
    assert len(answers) == 8 and all(set(a) <= set(DOTTED["alphabet"]) for a in answers)


def test_generate_refuses_a_substitute_that_cannot_read_the_plugin_alphabet(plugin_site, tmp_path):
    checkpoint = _checkpoint(tmp_path / "digits", "0123456789")
    result = run(tmp_path, "farm", "generate", "--pool", "dots", "--scheme", "dotted", "--count", "4", "--steps", "1",
                 "--mask", "full", "--checkpoint", str(checkpoint), site=plugin_site, timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "'0123456789'" in result.stderr, result.stderr


BROKEN_MODULE = '''
import numpy as np
from farm.core.schemes import Scheme
from farm.core.schemes.classic import ClassicScheme

class Clone(ClassicScheme):
    """Takes the name of a built-in."""

class Misnamed(ClassicScheme):
    name = "other"

class NoWidth(ClassicScheme):
    name = "nowidth"
    width = 0

class Wrong(Scheme):
    name = "wrongsize"
    width, height = 100, 40

    def draw(self, text, rng):
        return np.zeros((40, 99), np.uint8), np.zeros((40, 99), bool)
'''


@pytest.fixture
def broken_site(tmp_path) -> Path:
    """A distribution "broken-schemes 1.0" whose entry points fail in every way (a dist-info by hand)."""
    site = tmp_path / "broken-site"
    info = site / "broken_schemes-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-schemes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[captchafarm.schemes]\n"
        "missing = no_such_module_for_farm:Scheme\n"
        "notascheme = json:dumps\n"
        "classic = broken_schemes:Clone\n"
        "misnamed = broken_schemes:Misnamed\n"
        "nowidth = broken_schemes:NoWidth\n"
        "wrongsize = broken_schemes:Wrong\n")
    (site / "broken_schemes.py").write_text(BROKEN_MODULE)
    return site


def test_broken_plugins_are_listed_with_their_error_and_built_ins_still_work(broken_site, tmp_path):
    result = run(tmp_path, "farm", "schemes", "--json", site=broken_site)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    errors = {r["name"]: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"missing", "notascheme", "classic", "misnamed", "nowidth"}
    assert "ModuleNotFoundError" in errors["missing"] and "no_such_module_for_farm" in errors["missing"]
    assert "not a subclass of farm.core.schemes.Scheme" in errors["notascheme"]
    assert "'classic' already exists (built-in)" in errors["classic"]
    assert "named 'misnamed' but Misnamed.name is 'other'; make them equal" in errors["misnamed"]
    assert "width" in errors["nowidth"]
    assert all(r["source"] == "broken-schemes 1.0" for r in rows if r["error"])
    # the built-in keeps its name; the scheme that loads (wrongsize) is listed like any other
    loaded = {r["name"]: r for r in rows if not r["error"]}
    assert loaded["classic"]["source"] == "built-in" and loaded["wrongsize"]["source"] == "broken-schemes 1.0"
    # warnings name the entry point and the distribution
    assert "no_such_module_for_farm:Scheme (from broken-schemes 1.0) skipped" in result.stderr

    text = run(tmp_path, "farm", "schemes", site=broken_site).stdout
    assert "missing    NOT LOADED (broken-schemes 1.0, no_such_module_for_farm:Scheme)" in text

    code = ("from farm.core.schemes import get_scheme\n"
            "print(get_scheme('classic').sample(1).text)\n"
            "try:\n    get_scheme('missing')\nexcept ValueError as e:\n    print(e)\n")
    result = run(tmp_path, "python", "-c", code, site=broken_site)
    assert result.returncode == 0, result.stderr
    classic_text, error = result.stdout.splitlines()
    assert len(classic_text) == 4
    assert "'missing' is a plugin (no_such_module_for_farm:Scheme from broken-schemes 1.0) that failed" in error


def test_plugin_drawing_the_wrong_size_gets_an_error_naming_it(broken_site, tmp_path):
    code = ("from farm.core.schemes import get_scheme\nfrom farm.exceptions import SchemeError\n"
            "try:\n    get_scheme('wrongsize').sample(1)\nexcept SchemeError as e:\n    print(e)\n")
    result = run(tmp_path, "python", "-c", code, site=broken_site)
    assert result.returncode == 0, result.stderr
    assert "scheme 'wrongsize' (broken_schemes.Wrong)" in result.stdout
    assert "(40, 99)" in result.stdout and "(height, width) = (40, 100)" in result.stdout


def _scheme(**attrs) -> type:
    def draw(self, text, rng):
        return np.zeros((self.height, self.width), np.uint8), np.zeros((self.height, self.width), bool)
    return type("Custom", (Scheme,), {"name": "custom", "width": 100, "height": 40, "draw": draw, **attrs})


@pytest.mark.parametrize("attrs, message", [
    ({"name": "Has Space"}, "name: 'Has Space' must be lowercase"),
    ({"width": -5}, "width: -5 must be a positive int"),
    ({"height": 40.0}, "height: 40.0 must be a positive int"),
    ({"alphabet": "abca"}, "repeated characters"),
    ({"alphabet": "ab c"}, "without whitespace"),
    ({"lengths": (6, 5)}, "min \\(6\\) <= max \\(5\\)"),
    ({"lengths": (4, 40)}, "at most 12"),
    ({"draw": Scheme.draw}, "does not implement draw"),
])
def test_scheme_classes_that_do_not_fit_are_refused_naming_the_attribute(attrs, message):
    cls = _scheme(**attrs)
    with pytest.raises(SchemeError, match=message):
        check_scheme(cls)


def test_a_fitting_scheme_class_passes_the_check():
    cls = _scheme()
    assert check_scheme(cls) is cls and cls().sample(3).image.shape == (40, 100)
