"""The package layout and import hygiene: the top-level folders are tierroute's subpackages, and
importing any module has no side effects."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tierroute

SUBPACKAGES = {"features": "features", "models": "models", "pipelines": "pipelines", "serving": "serving"}


@pytest.mark.parametrize("name,folder", sorted(SUBPACKAGES.items()))
def test_top_level_folders_are_the_subpackages(name: str, folder: str, repo_root: Path) -> None:
    module = importlib.import_module(f"tierroute.{name}")
    assert Path(module.__file__).resolve().parent == (repo_root / folder).resolve()


def _all_modules() -> list[str]:
    names = ["tierroute"]
    for pkg in ("tierroute", *(f"tierroute.{n}" for n in SUBPACKAGES)):
        module = importlib.import_module(pkg)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, prefix=f"{pkg}.")]
    return sorted(set(names))


def test_every_module_imports_without_writing_files(tmp_path: Path) -> None:
    before = set(tmp_path.iterdir())
    modules = _all_modules()
    assert "tierroute.pipelines.data.ingest" in modules and "tierroute.cli" in modules
    for name in modules:
        importlib.import_module(name)
    assert set(tmp_path.iterdir()) == before


def test_importing_the_package_root_stays_light() -> None:
    code = (
        "import sys, tierroute, tierroute.features, tierroute.models, tierroute.pipelines, tierroute.serving\n"
        "heavy = [m for m in ('torch', 'lightgbm', 'mlflow', 'sklearn', 'datasets', 'pandas', 'sentence_transformers') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_catalogues_ship_as_package_data() -> None:
    from importlib import resources

    names = sorted(p.name for p in resources.files("tierroute").joinpath("catalogues").iterdir() if p.name.endswith(".toml"))
    assert names == ["article.toml", "routellm.toml", "routerbench.toml"]
    assert tierroute.__version__


def test_a_source_checkout_imports_without_an_install(repo_root: Path) -> None:
    # -S: no site-packages, so the editable install's finder is not there; the subpackages must
    # still be found in the top-level folders (find_spec locates them without running them).
    code = "import importlib.util as u; print('|'.join(u.find_spec('tierroute.' + n).origin for n in ('features', 'serving')))"
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=repo_root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    found = [Path(p).resolve() for p in out.stdout.strip().split("|")]
    assert found == [(repo_root / n / "__init__.py").resolve() for n in ("features", "serving")]
