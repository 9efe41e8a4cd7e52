"""Runs command lines of the repository's scripts as ``python SCRIPT ARGS...`` would, many per interpreter.

One fresh interpreter (a subprocess) imports torch and the project once, then forks a child per command
line. The child sets ``sys.argv``, ``sys.path[0]`` and the working folder as the interpreter does for a
script, runs the file as ``__main__``, and ends the way the interpreter would: ``SystemExit`` gives its
status (a message goes to stderr, status 1), any other exception prints its traceback, status 1. So each
command line sees a fresh process, at a fraction of the cost of starting Python and torch each time.

    python tests/cli_runner.py CASES.json   # [{"script", "argv", "cwd", "out", "err"}, ...] -> exit codes
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("error:")]


def files_in(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: relative path -> (contents, modification time in ns), to show that a refused
    run left every file as it was."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(capsys) -> str:
    """The one ``error:`` line a ``main(argv)`` called in-process printed to stderr (beside a progress bar),
    without a traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def run_clis(cases: list[tuple[str, list[str]]], folder: Path, cwd: Path | None = None,
             timeout: float = 600) -> list[Result]:
    """Run ``(script relative to the repository, argv)`` pairs; stdout/stderr files go to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = [{"script": str(ROOT / s), "argv": [str(a) for a in argv], "cwd": str(cwd or folder),
             "out": str(folder / f"{k}.out"), "err": str(folder / f"{k}.err")} for k, (s, argv) in enumerate(cases)]
    (folder / "cases.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, __file__, str(folder / "cases.json")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    return [Result(c, Path(s["out"]).read_text(), Path(s["err"]).read_text()) for c, s in zip(codes, spec)]


def _child(case: dict, path: list[str]) -> int:
    import runpy
    import traceback

    for fd, name in ((1, case["out"]), (2, case["err"])):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    os.chdir(case["cwd"])
    sys.argv = [case["script"], *case["argv"]]
    sys.path[:] = [os.path.dirname(case["script"]), *path]
    try:
        runpy.run_path(case["script"], run_name="__main__")
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _main(cases_file: str) -> None:
    path = sys.path[1:]  # the interpreter's path without this file's folder
    sys.path.insert(1, str(ROOT))
    import torch  # noqa: F401  -- imported once, shared by every forked child
    import core.trainer  # noqa: F401
    import data.celeba  # noqa: F401

    codes = []
    for case in json.loads(Path(cases_file).read_text()):
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(_child(case, path))
        codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    print(json.dumps(codes))


if __name__ == "__main__":
    _main(sys.argv[1])
