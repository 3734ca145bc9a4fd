"""The distribution installs one import package, `servetrace`, from a wheel and an sdist alike,
with the repository's loaders/, analysis/ and synth/ inside it; the version has one source."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

import servetrace

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("loaders", "analysis", "synth", "synth/export")


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An sdist, and a wheel built from that sdist (``python -m build``'s default path)."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                           str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sdist,), (wheel,) = out.glob("*.tar.gz"), out.glob("*.whl")
    return sdist, wheel


def test_wheel_holds_one_top_level_package(dists):
    _, wheel = dists
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"servetrace", f"servetrace-{servetrace.__version__}.dist-info"}
    for sub in SUBPACKAGES:
        assert f"servetrace/{sub}/__init__.py" in names
    assert "servetrace/loaders/store.py" in names
    assert "servetrace/synth/export/vidur.py" in names
    assert not any(n.startswith(("servetrace/tests", "servetrace/bench")) for n in names)
    entry = zipfile.ZipFile(wheel).read(
        f"servetrace-{servetrace.__version__}.dist-info/entry_points.txt").decode()
    assert "servetrace = servetrace.cli:app" in entry


def test_sdist_keeps_the_repository_layout(dists):
    sdist, _ = dists
    names = tarfile.open(sdist).getnames()
    base = sdist.name.removesuffix(".tar.gz")
    for sub in SUBPACKAGES:
        assert f"{base}/{sub}/__init__.py" in names
    assert f"{base}/pyproject.toml" in names
    assert f"{base}/servetrace/cli.py" in names


def test_installed_wheel_adds_servetrace_and_nothing_else(dists, tmp_path: Path):
    _, wheel = dists
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-compile", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    tops = {p.name for p in target.iterdir()} - {"bin"}
    assert tops == {"servetrace", f"servetrace-{servetrace.__version__}.dist-info"}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "import servetrace.loaders.store, servetrace.analysis.burstiness, "
            "servetrace.synth.export; print(servetrace.loaders.store.__file__)")
    # run from the filesystem root so that the repository's own folders cannot be imported
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True,
                          text=True, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(target / "servetrace" / "loaders" / "store.py")


def test_version_has_one_source():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert servetrace.__version__ == version("servetrace") == declared
    proc = subprocess.run([str(Path(sys.executable).parent / "servetrace"), "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"servetrace {declared}"


def test_dependencies_are_bounded():
    """Every runtime dependency has a lower bound; DuckDB (file format) stays below 2."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    specs = project["dependencies"] + extras["replay"] + extras["ibm"] + extras["ray"]
    assert all(">=" in s for s in specs), specs
    duck = next(s for s in specs if s.startswith("duckdb"))
    assert "<2" in duck


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch):
    from servetrace.extras import MissingExtra, require

    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if not installed
    with pytest.raises(MissingExtra, match=r"pip install 'servetrace\[replay\]'"):
        require("aiohttp", "replay", "replay against an endpoint")


def test_cli_without_the_extra_says_which_to_install(tmp_path: Path):
    """`servetrace replay` where aiohttp cannot be imported: one line, no traceback."""
    blocked = tmp_path / "blocked" / "aiohttp"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('aiohttp is blocked in this test')\n")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "servetrace"), "replay", "azure_llm_2023/conv",
         "--endpoint", "http://127.0.0.1:9", "--store", str(tmp_path / "store")],
        capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(blocked.parent), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "pip install 'servetrace[replay]'" in proc.stderr
