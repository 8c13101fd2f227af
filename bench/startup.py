"""How long a clerk waits for `zhibao`, as installed: before/after command times (issue #13).

    .venv/bin/python bench/startup.py [--history 20000] [--runs 10] [--before REF]

`bench/append.py` times the commands of this checkout's editable install: its import
finder (~25 ms) and a bytecode cache kept aside are not what a clerk's machine has. Here
each side is installed as pip installs a wheel: `sync`, `tiers` and `cli` copied into the
site-packages of a venv of their own (its dependencies those of .venv, through a .pth
file; no editable finder) and compiled to bytecode beside the sources, with the console
script pip writes. "before" is `git archive REF` (default main), "after" this working tree.

Figures (one per line, `name: value unit`), each command run --runs times per side, the
two sides taking turns run by run on the same town of --history entries (a shared
machine's load falls on both alike): `{before,after}_{command}_median`, `_min` and
`_cpu_median` (user+sys of the child) for `python -c pass`, `python -c "import
cli.main"`, `zhibao node show`, `zhibao case list` and `zhibao case accept ...`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, figure, note, print_machine
from append import ACCEPT, make_town

PACKAGES = ("sync", "tiers", "cli")
SCRIPT = """#!{python}
import sys
from cli.main import main
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit(main())
"""


def install(venv: Path, source: Path) -> Path:
    """A venv holding the packages of `source` as a wheel install would; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    (purelib / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for package in PACKAGES:
        shutil.copytree(
            source / package, purelib / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    subprocess.run(  # as pip does: __pycache__ beside the sources, whatever this shell says
        [str(python), "-m", "compileall", "-q", *(str(purelib / p) for p in PACKAGES)],
        env=clean, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    script = venv / "bin" / "zhibao"
    script.write_text(SCRIPT.format(python=python))
    script.chmod(0o755)
    return python


def checkout(ref: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, *PACKAGES], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user+sys) seconds of one run of `argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, default=20_000, help="entries the town holds")
    parser.add_argument("--runs", type=int, default=10, help="runs of each command per side")
    parser.add_argument("--before", default="main", metavar="REF", help="the code before")
    args = parser.parse_args()
    print_machine()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.before],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    note(f"before: {args.before} ({commit}); after: this working tree; both installed")
    with tempfile.TemporaryDirectory(prefix="zhibao-startup-") as tmp:
        base = Path(tmp)
        home = make_town(base, args.history)
        sides = {
            "before": install(base / "before", checkout(args.before, base / "src")),
            "after": install(base / "after", ROOT),
        }
        env = dict(os.environ, ZHIBAO_HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
        for name in ("PYTHONPYCACHEPREFIX", "PYTHONPATH", "ZHIBAO_DEBUG"):
            env.pop(name, None)  # the bytecode is what the install compiled, nothing else
        commands = {
            "python_startup": ["python", "-c", "pass"],
            "import_cli_main": ["python", "-c", "import cli.main"],
            "node_show": ["zhibao", "node", "show"],
            "case_list": ["zhibao", "case", "list"],
            "case_accept": ["zhibao", *ACCEPT],
        }
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for python in sides.values():  # the town's first opening by each code, not timed
            run([str(python.parent / "zhibao"), "case", "list"], env)
        note(f"load average before the timings: {os.getloadavg()[0]:.2f}")
        for _ in range(args.runs):
            for command, argv in commands.items():
                for side, python in sides.items():
                    exe = python.parent / argv[0]
                    times.setdefault((side, command), []).append(run([str(exe), *argv[1:]], env))
        note(f"load average after the timings: {os.getloadavg()[0]:.2f}")
        for command in commands:
            for side in sides:
                walls = [w for w, _ in times[side, command]]
                cpus = [c for _, c in times[side, command]]
                figure(f"{side}_{command}_median", statistics.median(walls) * 1000, "ms")
                figure(f"{side}_{command}_min", min(walls) * 1000, "ms")
                figure(f"{side}_{command}_cpu_median", statistics.median(cpus) * 1000, "ms")
        note("case_accept: zhibao " + " ".join(ACCEPT))


if __name__ == "__main__":
    main()
