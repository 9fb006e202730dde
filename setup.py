"""Packaging beyond what pyproject.toml can say: the suite files and the paper's reference tables are edited in the
top-level `benchmarks/` folder and ship inside the package as `pacebench.benchmarks` (found with
importlib.resources, in a wheel and in an editable install alike). The folder's benchmark scripts do not ship."""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

DATA = "pacebench.benchmarks"


class BuildPy(build_py):
    """Copies benchmarks/'s suite files and reference CSVs into the wheel, not its scripts."""

    def find_package_modules(self, package: str, package_dir: str) -> list:
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if m[1] == "__init__"] if package == DATA else modules


setup(
    packages=[*find_packages(include=["pacebench*"]), DATA],
    package_dir={DATA: "benchmarks"},
    package_data={"pacebench": ["store/migrations/*.py", "store/migrations/*.mako",  # Alembic loads them by path
                                "store/migrations/versions/*.py"],
                  DATA: ["*.toml", "reference/*.csv", "reference/*.md"]},
    cmdclass={"build_py": BuildPy},
)
