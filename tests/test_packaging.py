"""The requirement files as pip and a Hugging Face Space read them."""

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _lines(name: str) -> list[str]:
    text = (ROOT / name).read_text()
    return [ln.split(" #")[0].strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _requirements(name: str) -> dict[str, Requirement]:
    reqs = {}
    for ln in _lines(name):
        if ln.startswith("-"):
            continue
        r = Requirement(ln)  # raises on anything pip would not parse
        reqs[r.name.lower()] = r
    return reqs


def _torch_pin(name: str) -> Version:
    (spec,) = _requirements(name)["torch"].specifier
    assert spec.operator == "==", f"{name} must pin torch exactly, got {spec}"
    return Version(spec.version)


def test_space_gets_the_cpu_torch_of_the_constraints():
    """A Space runs `pip install -r pre-requirements.txt` and then `-r requirements.txt`, without
    constraints.txt: the first must bring the CPU build of the pinned torch, which the second accepts."""
    pinned = _torch_pin("constraints.txt")
    pre = _torch_pin("pre-requirements.txt")
    assert pre.public == pinned.public and pre.local == "cpu", (pre, pinned)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in _lines("pre-requirements.txt")
    # requirements.txt's own pin must be met by the CPU build, or pip would replace it
    assert _requirements("requirements.txt")["torch"].specifier.contains(pre, prereleases=True)
    assert _torch_pin("requirements.txt") == pinned


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt", "constraints.txt"])
def test_requirement_files_parse(name):
    for ln in _lines(name):
        if ln.startswith("-"):
            assert ln.split()[0] in ("-r", "-c"), f"{name}: unexpected pip option {ln!r}"
            assert (ROOT / ln.split()[1]).is_file(), f"{name}: {ln!r} names a missing file"
    assert _requirements(name)


def test_space_header_names_the_app():
    head = (ROOT / "README.md").read_text().split("---")[1]
    fields = dict(ln.split(":", 1) for ln in head.strip().splitlines())
    assert fields["sdk"].strip() == "gradio" and (ROOT / fields["app_file"].strip()).is_file()


def test_runtime_setup_after_the_test_setup_installs_nothing():
    """`bash scripts/test.sh` (a --dev install) then `bash scripts/app.sh` must not install again."""
    import subprocess

    if not (ROOT / ".venv/.gmsdi-installed").is_file():
        pytest.skip("no scripts/setup.sh install here")
    out = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "installing Python packages" not in out.stdout and "setup: ready" in out.stdout, out.stdout


def test_no_deprecation_warnings_from_our_files():
    """Importing the package, its app and its CLI warns about nothing of ours; pyproject's licence is
    an SPDX string (setuptools warns about the old table form)."""
    import importlib
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("gmsdi", "gmsdi.pipeline", "gmsdi.app", "gmsdi.cli", "gmsdi.eval.cli", "gmsdi.data.synth"):
            importlib.import_module(name)
    ours = [w for w in caught if issubclass(w.category, DeprecationWarning | FutureWarning)
            and str(ROOT / "gmsdi") in str(w.filename)]
    assert not ours, [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert isinstance(project["license"], str), "project.license must be an SPDX string, e.g. \"MIT\""
