"""Builds the portable wheel once per state of its sources and prints its path (``make wheel``).

The wheel is ``manylinux2014`` (glibc 2.17 and newer, x86-64): ``maturin build --release --zig
--compatibility manylinux2014`` links with zig against glibc 2.17's symbols, so it needs no build
container; ``auditwheel show`` then has to find it consistent with ``manylinux_2_17_x86_64`` or the
build fails. The CPU dispatch is at run time (``is_x86_feature_detected!`` in ``rust/src/atr.rs``),
so the generic x86-64 build keeps the AVX2/FMA kernel (``tests/test_wheel.py`` checks that it runs).

Cargo builds into ``target/wheel`` (``CARGO_TARGET_DIR``), apart from ``maturin develop``'s build, so
neither invalidates the other. The wheel goes to ``target/wheel/dist/<hash>/``, where ``<hash>`` is a
SHA-256 over the paths and contents of every file the wheel is made from (tracked or new, not
ignored: ``rust/``, ``sigil_core/``, ``python/``, the Cargo files, ``pyproject.toml``,
``README.md``): an unchanged tree returns the wheel already built at once, and ``tests/test_wheel.py``
reuses what ``make wheel`` built. A release build of the crate takes minutes; a lock keeps two
builders from running at once. Usage: ``python tools/build_wheel.py [--force]``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "target" / "wheel"
DIST = TARGET / "dist"
#: What the wheel is made from.
SOURCES = ("rust", "sigil_core", "python", "Cargo.toml", "Cargo.lock", "pyproject.toml", "README.md")
PLATFORM_TAG = "manylinux_2_17_x86_64"
#: Wheels of earlier source states kept besides the newest.
KEEP = 2


def source_hash(repo: Path = REPO) -> str:
    """SHA-256 (hex, 16 digits) of the paths and contents of the wheel's source files."""
    listed = subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            *SOURCES,
        ],
        check=True,
        capture_output=True,
    ).stdout
    digest = hashlib.sha256()
    for name in sorted(set(listed.decode().split("\0")) - {""}):
        path = repo / name
        if path.is_file():  # a tracked file deleted in the working tree is not a source any more
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def check_platform(wheel: Path) -> str:
    """``auditwheel show``'s report; RuntimeError unless it finds the wheel manylinux 2.17."""
    auditwheel = shutil.which("auditwheel", path=str(Path(sys.executable).parent)) or "auditwheel"
    report = subprocess.run(
        [auditwheel, "show", str(wheel)], check=True, capture_output=True, text=True
    ).stdout
    if f'"{PLATFORM_TAG}"' not in report.split("consistent with the following platform tag:")[-1][:200]:
        raise RuntimeError(f"{wheel.name} is not {PLATFORM_TAG}:\n{report}")
    return report


def build(out: Path) -> Path:
    """Builds the wheel into ``out`` (made fresh) and checks it; its path."""
    shutil.rmtree(out, ignore_errors=True)
    bin_dir = Path(sys.executable).parent
    maturin = shutil.which("maturin", path=str(bin_dir)) or "maturin"
    # maturin finds zig as `python -m ziglang` of the interpreter on PATH: this venv's.
    env = {
        **os.environ,
        "CARGO_TARGET_DIR": str(TARGET),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    cmd = [maturin, "build", "--release", "--zig", "--compatibility", "manylinux2014", "--out", str(out)]
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    (wheel,) = out.glob("*.whl")
    check_platform(wheel)
    return wheel


def portable_wheel(force: bool = False) -> Path:
    """The wheel of the current sources: built now unless already there (or ``force``)."""
    DIST.mkdir(parents=True, exist_ok=True)
    with (TARGET / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        key = source_hash()
        done = DIST / key
        wheels = sorted(done.glob("*.whl")) if done.is_dir() else []
        if wheels and not force:
            return wheels[0]
        started = time.monotonic()
        wheel = build(DIST / f"{key}.partial")
        shutil.rmtree(done, ignore_errors=True)
        (DIST / f"{key}.partial").rename(done)
        print(f"built {wheel.name} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        older = sorted(
            (d for d in DIST.iterdir() if d.is_dir() and d != done), key=lambda d: d.stat().st_mtime
        )
        for stale in older[: max(0, len(older) - KEEP)]:
            shutil.rmtree(stale, ignore_errors=True)
        return done / wheel.name


if __name__ == "__main__":
    print(portable_wheel(force="--force" in sys.argv[1:]))
