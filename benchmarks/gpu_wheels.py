"""Download the wheels of ``benchmarks/gpu_wheels.txt`` for the lent GPU machine (CPython 3.12, manylinux
x86_64, no network there) and print the one command line that installs them there and runs the GPU check.

    python -m benchmarks.gpu_wheels [--dest .whl]      # make gpu-wheels

Each pinned requirement is downloaded as a wheel for that interpreter and platform; one published only
as a source archive is built here into a wheel, which must come out pure Python (py3-none-any), since
nothing built for this machine's interpreter would load there. The folder is ignored by git and travels
with the device call through its ``carry`` argument (benchmarks/README.md, "The GPU procedure").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

WHEEL_LIST = Path(__file__).resolve().with_name("gpu_wheels.txt")
DEFAULT_DEST = Path(".whl")
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
SITE = "/tmp/site"  # where the device command installs them
DEVICE_COMMAND = (
    f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target {SITE} {{dest}}/*.whl "
    f"&& export PYTHONPATH={SITE}:$PWD PYTHONUNBUFFERED=1 && python3 -m benchmarks.gpu_check --out $OUT"
)


def requirements(path: Path = WHEEL_LIST) -> list[str]:
    """The pinned requirements (``name==version``), comments and blank lines dropped."""
    pinned = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        if "==" not in requirement:
            raise ValueError(f"{path}:{number}: {requirement!r} is not pinned; write name==version")
        pinned.append(requirement)
    return pinned


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def download(dest: Path, pinned: list[str] | None = None) -> list[Path]:
    """Every pinned requirement as a wheel in ``dest`` (binary for CPython 3.12 manylinux, or built here
    when only a source archive exists, then required to be pure Python). Returns the wheel files."""
    dest.mkdir(parents=True, exist_ok=True)
    platform_args = [argument for name in PLATFORMS for argument in ("--platform", name)]
    for requirement in pinned if pinned is not None else requirements():
        before = set(dest.glob("*.whl"))
        result = _pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON_VERSION,
                      "--implementation", "cp", *platform_args, "--dest", str(dest), requirement)
        if result.returncode != 0:
            if "No matching distribution" not in result.stderr:
                raise RuntimeError(f"pip download {requirement} failed:\n{result.stderr.strip()}")
            built = _pip("wheel", "--quiet", "--no-deps", "--no-binary", ":all:", "--wheel-dir", str(dest), requirement)
            if built.returncode != 0:
                raise RuntimeError(f"{requirement} has no wheel for CPython {PYTHON_VERSION} manylinux and building "
                                   f"one failed:\n{built.stderr.strip()}")
        new = sorted(set(dest.glob("*.whl")) - before)
        impure = [wheel.name for wheel in new if not wheel.name.endswith("-none-any.whl") and "cp312" not in wheel.name]
        if impure:
            raise RuntimeError(f"{requirement}: built {impure}, which is tied to this machine's Python; the GPU "
                               f"machine runs CPython {PYTHON_VERSION}: pin a version that publishes a wheel")
    return sorted(dest.glob("*.whl"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="the (git-ignored) folder for the wheels")
    args = parser.parse_args(argv)
    wheels = download(args.dest)
    size = sum(wheel.stat().st_size for wheel in wheels)
    print("\n".join(f"  {wheel.name}" for wheel in wheels))
    print(f"{len(wheels)} wheels, {size / 2**20:.1f} MiB in {args.dest}. On the GPU machine (device run, "
          f"carry=[{str(args.dest)!r}], timeout_s=600):\n  {DEVICE_COMMAND.format(dest=args.dest)}")


if __name__ == "__main__":
    main()
