"""The lock files match pyproject.toml: offline, from the files alone.

`make lock` resolves requirements.lock (runtime) and requirements-dev.lock (runtime and dev)
with uv; `make test` installs the dev lock with `pip install --require-hashes`. A dependency
added to or removed from pyproject without `make lock` must fail here, not in production.
Checked: every requirement of pyproject (and of its build-system) is satisfied by every
pin of its name; every pin is reachable from those requirements through the `# via` lines uv
writes; each pin has hashes; no line names a registry host; the runtime lock pins what the
dev lock pins.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "wecom-tagbot"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


@dataclass
class Pin:
    name: str
    version: Version
    marker: str
    hashes: int = 0
    via: list[str] = field(default_factory=list)


def parse_lock(text: str) -> list[Pin]:
    """Read a `uv pip compile --generate-hashes` file into its pins, hashes and `# via` parents."""
    pins: list[Pin] = []
    in_via = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("# This file") or line == "#    make lock":
            continue
        if line.startswith("--hash=sha256:"):
            pins[-1].hashes += 1
            continue
        if line.startswith("#"):
            note = line.lstrip("#").strip()
            if note.startswith("via"):
                in_via = True
                note = note.removeprefix("via").strip()
            if in_via and note and pins:
                pins[-1].via.append(note)
            continue
        in_via = False
        match = _PIN.match(line)
        if match is None:
            raise AssertionError(f"line {number} is not a pinned requirement: {raw!r}")
        name, version, marker = match.groups()
        pins.append(Pin(canonicalize_name(name), Version(version), (marker or "").strip()))
    return pins


def _parent(via: str) -> str | None:
    """Name the package a `# via` line points at; None for the project or a `-c`/`-r` file."""
    if via.startswith(("-c ", "-r ")) or via.startswith(PROJECT):
        return None
    return canonicalize_name(via)


def roots(*, dev: bool) -> list[Requirement]:
    """The requirements the lock must serve: dependencies, dev extra, build-system requires."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    specs = list(data["project"]["dependencies"]) + list(data["build-system"]["requires"])
    if dev:
        specs += data["project"]["optional-dependencies"]["dev"]
    return [Requirement(s) for s in specs]


def lock_problems(pins: list[Pin], requirements: list[Requirement]) -> list[str]:
    """List how a lock disagrees with the requirements it was resolved from."""
    problems = []
    by_name: dict[str, list[Pin]] = {}
    for pin in pins:
        by_name.setdefault(pin.name, []).append(pin)
        if pin.hashes == 0:
            problems.append(f"{pin.name}=={pin.version} has no hash")
    wanted = {canonicalize_name(r.name) for r in requirements}
    for req in requirements:
        name = canonicalize_name(req.name)
        if name not in by_name:
            problems.append(f"{req} is not in the lock")
        for pin in by_name.get(name, []):
            if not req.specifier.contains(pin.version, prereleases=True):
                problems.append(f"{req} is not satisfied by the pin {name}=={pin.version}")
    # Reachable: a requirement itself, or needed (`# via`) by a reachable pin.
    reached = set(wanted)
    grew = True
    while grew:
        grew = False
        for pin in pins:
            if pin.name not in reached and any(_parent(v) in reached for v in pin.via):
                reached.add(pin.name)
                grew = True
    for pin in pins:
        if pin.name not in reached:
            problems.append(
                f"{pin.name}=={pin.version} is pinned but nothing in pyproject.toml needs it"
                f" (via {', '.join(pin.via) or 'nothing'})"
            )
    return problems


LOCKS = {"requirements.lock": False, "requirements-dev.lock": True}


@pytest.mark.parametrize(("lock", "dev"), LOCKS.items())
def test_lock_matches_pyproject(lock: str, dev: bool) -> None:
    pins = parse_lock((ROOT / lock).read_text(encoding="utf-8"))
    problems = lock_problems(pins, roots(dev=dev))
    assert not problems, f"{lock} does not match pyproject.toml — run `make lock`:\n" + "\n".join(
        problems
    )


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_names_no_registry_host(lock: str) -> None:
    # A lock installs from whatever index pip is configured with; an index URL, find-links
    # directory or trusted host written into it would leak one machine's setup into all.
    offending = [
        line
        for line in (ROOT / lock).read_text(encoding="utf-8").splitlines()
        if "://" in line
        or re.match(r"\s*(-i|-f|--index-url|--extra-index-url|--find-links|--trusted-host)\b", line)
    ]
    assert offending == []


def test_runtime_lock_pins_what_dev_lock_pins() -> None:
    runtime = parse_lock((ROOT / "requirements.lock").read_text(encoding="utf-8"))
    dev = {
        (p.name, p.marker): p.version
        for p in parse_lock((ROOT / "requirements-dev.lock").read_text(encoding="utf-8"))
    }
    differ = [
        f"{p.name}=={p.version} ({p.marker or 'all'}) vs {dev.get((p.name, p.marker))}"
        for p in runtime
        if dev.get((p.name, p.marker)) != p.version
    ]
    assert differ == []


# The checker itself must catch drift both ways, on a lock written the way uv writes one.
_SAMPLE = """\
# This file was autogenerated by uv via the following command:
#    make lock
flask==3.1.2 \\
    --hash=sha256:aa
    # via wecom-tagbot (pyproject.toml)
numpy==2.4.6 ; python_full_version < '3.12' \\
    --hash=sha256:bb
    # via
    #   -c requirements-dev.lock
    #   scipy
scipy==1.17.1 ; python_full_version < '3.12' \\
    --hash=sha256:cc
    # via wecom-tagbot (pyproject.toml)
setuptools==84.2.1 \\
    --hash=sha256:dd
"""


def test_checker_accepts_a_matching_lock() -> None:
    pins = parse_lock(_SAMPLE)
    assert [(p.name, str(p.version), p.marker) for p in pins][1] == (
        "numpy",
        "2.4.6",
        "python_full_version < '3.12'",
    )
    reqs = [Requirement(s) for s in ("Flask>=3.1,<4", "scipy>=1.13,<2", "setuptools>=77")]
    assert lock_problems(pins, reqs) == []


def test_checker_catches_an_added_a_changed_and_a_removed_dependency() -> None:
    pins = parse_lock(_SAMPLE)
    reqs = [Requirement(s) for s in ("flask>=3.2", "setuptools>=77", "lark>=1.3")]
    assert lock_problems(pins, reqs) == [
        "flask>=3.2 is not satisfied by the pin flask==3.1.2",
        "lark>=1.3 is not in the lock",
        "numpy==2.4.6 is pinned but nothing in pyproject.toml needs it (via -c requirements-dev.lock, scipy)",
        "scipy==1.17.1 is pinned but nothing in pyproject.toml needs it (via wecom-tagbot (pyproject.toml))",
    ]


def test_checker_refuses_a_pin_without_hash_and_an_unpinned_line() -> None:
    pins = parse_lock("flask==3.1.2\n    # via wecom-tagbot (pyproject.toml)\n")
    assert lock_problems(pins, [Requirement("flask")]) == ["flask==3.1.2 has no hash"]
    with pytest.raises(AssertionError, match="line 1 is not a pinned requirement"):
        parse_lock("flask>=3.1 \\\n    --hash=sha256:aa\n")
