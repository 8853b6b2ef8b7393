"""The built package carries its default config: a wheel built from this tree, installed into a
fresh venv, runs `agentdbg validate` (and shows `query`'s default) from a directory that is not
the checkout, with no `--config`.

The wheel is built offline with the test venv's setuptools (`--no-build-isolation`), from a
copy of the tree, so the checkout gets no build/ or egg-info of its own. The fresh venv sees the
dependencies through a .pth line naming the test venv's site-packages (a line in a .pth is a
plain path, so the test venv's editable install of the checkout is not run there): the project
itself can only come from the wheel.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from pipeline.config.shipped import CHECKOUT_DEFAULT, default_config

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "receivers", "processors", "exporters", "extensions", "connectors")
BUILD_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in")


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_FILES:
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "config", source / "config")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheels")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", out, source, cwd=source)
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", home, cwd=home)
    python = home / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=home).strip())
    (purelib / "agentdbg_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel, cwd=home)
    return home


def test_a_checkout_uses_its_config_directory() -> None:
    assert default_config() == str(CHECKOUT_DEFAULT) == str(ROOT / "config" / "default.yaml")


def test_the_wheel_carries_config_default_yaml_as_package_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("pipeline/config/default.yaml") == (ROOT / "config" / "default.yaml").read_bytes()


def test_an_installed_agentdbg_finds_its_default_config_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    installed = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    found = run(venv / "bin" / "python", "-c", "import pipeline.cli as c; print(c.__file__); print(c.DEFAULT_CONFIG)",
                cwd=elsewhere, env=env).split()
    assert found == [str(installed / "pipeline" / "cli.py"), str(installed / "pipeline" / "config" / "default.yaml")]
    assert run(venv / "bin" / "agentdbg", "validate", cwd=elsewhere, env=env).startswith("configuration is valid")
    for command in ("query", "sessions"):  # the commands that read the default config's paths and endpoint
        shown = run(venv / "bin" / "agentdbg", command, "--help", cwd=elsewhere, env={**env, "COLUMNS": "400"})
        assert f"(default: {found[1]})" in shown
