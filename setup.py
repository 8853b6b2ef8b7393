"""Build hook (the metadata is in pyproject.toml): the wheel carries config/default.yaml as
package data, `pipeline/config/default.yaml`, so an installed `agentdbg` finds its default
config without a checkout (pipeline/config/shipped.py). config/ stays the one source."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = {"config/default.yaml": "pipeline/config/default.yaml"}  # checkout path -> path in the package


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        for source, target in SHIPPED.items():
            out = Path(self.build_lib) / target
            out.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(HERE / source), str(out))


setup(cmdclass={"build_py": BuildPy})
