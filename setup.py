"""Packaging glue that pyproject.toml cannot express: folder-to-package mapping and gRPC code generation.

The repository keeps the product's top-level folders (``scheduler/``, ``autoscaler/``, ``proto/``), and
they install under the one import package ``gpufleet`` (``gpufleet.scheduler``, ...), so the
distribution adds no generic top-level names to site-packages. The gRPC modules are generated from
``proto/**/*.proto`` by the build step, for wheels and editable installs alike.
"""

import importlib.util
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
FOLDERS = {"gpufleet": "gpufleet", "gpufleet.scheduler": "scheduler", "gpufleet.autoscaler": "autoscaler",
           "gpufleet.proto": "proto"}


def packages() -> list[str]:
    found = []
    for package, folder in FOLDERS.items():
        found.append(package)
        found += [f"{package}.{sub}" for sub in find_packages(str(ROOT / folder))]
    return found


class BuildWithProtos(build_py):
    """build_py that first generates the gRPC modules next to their ``.proto`` sources."""

    def run(self) -> None:
        spec = importlib.util.spec_from_file_location("_gpufleet_proto_build", ROOT / "proto" / "build.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.ensure_generated()
        super().run()


setup(packages=packages(), package_dir=FOLDERS, cmdclass={"build_py": BuildWithProtos})
