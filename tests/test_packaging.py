"""The distribution installs under one namespace (`hpsearch.*`), never as
top-level `search`, `models` or `data`, and an installed wheel finds its
shipped study files without a checkout."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        "hpsearch." + ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("search", "models", "data")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert folders <= listed, f"not listed in pyproject.toml: {sorted(folders - listed)}"


def test_installed_wheel_has_one_namespace_and_finds_its_studies(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "cwd"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True)
    (wheel,) = wheels.glob("hpsearch-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    assert sorted(p.name for p in target.iterdir() if p.name != "bin" and not p.name.endswith(".dist-info")) == ["hpsearch"]
    # -S: no site hooks, so the editable install of this checkout cannot answer
    # for `hpsearch`; the dependencies come from site-packages, hpsearch from the wheel.
    probe = """
import sys
import hpsearch.search.cli, hpsearch.models, hpsearch.data
from pathlib import Path
from hpsearch.search.study.spec import find_study_file, load_spec
path = find_study_file("smoke", Path("studies"))
assert str(path).startswith(sys.argv[1]), path
print(load_spec(path).name, hpsearch.models.__file__)
for name in ("search", "models", "data"):
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"top-level {name!r} importable")
"""
    env = {"PYTHONPATH": f"{target}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-S", "-c", probe, str(target)], cwd=elsewhere, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    name, models_file = out.stdout.split()
    assert name == "smoke" and models_file.startswith(str(target))
