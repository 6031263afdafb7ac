"""fastops built with other compiler flags, and the cython rung timed with each build (chapter 5).

The repository's build is portable: baseline x86-64 plus an x86-64-v3 copy picked at import
(fastops/__init__.py). What the opt-in flags (FASTOPS_NATIVE, FASTOPS_FAST_MATH) would add is a
measurement, not a guess: `build_copies` compiles fastops with them in a scratch folder, and
`time_cython` times the rung in a fresh process that imports that copy (or the repository's own
build with FASTOPS_ISA forcing one of its two ISAs).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from microgpt_lib.data import REPO_ROOT

ROOT = REPO_ROOT


def build_copies(scratch: Path, flag_sets: dict[str, dict[str, str]]) -> dict[str, Path]:
    """Build one copy of fastops per flag set in `scratch`, all at once; returns label -> folder.

    flag_sets: label -> environment variables of setup.py, e.g. {"native": {"FASTOPS_NATIVE":
    "1"}}. Each copy holds setup.py and fastops' sources and builds only the kernels (`_gpt`): it
    is imported to time the rung, nothing else. One build is one compiler process, so the builds
    run side by side, one per core. Raises RuntimeError with the compiler's output if any fails.
    """
    running = {}
    for k, (label, flags) in enumerate(flag_sets.items()):
        dest = Path(scratch) / f"build{k}"
        (dest / "fastops").mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "setup.py", dest)
        sources = [*(ROOT / "fastops").glob("*.p[yx]*"), *(ROOT / "fastops").glob("*.h")]
        for source in sources:  # .py, .pyx and the .pxi and .h files it includes
            shutil.copy(source, dest / "fastops")
        process = subprocess.Popen(
            [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=dest,
            env={**os.environ, "FASTOPS_MODULES": "_gpt", **flags},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        running[label] = (dest, flags, process)
    failures = []
    for label, (dest, flags, process) in running.items():
        _, stderr = process.communicate()
        if process.returncode != 0:
            failures.append(f"building fastops with {flags} failed:\n{stderr[-3000:]}")
    if failures:
        raise RuntimeError("\n".join(failures))
    return {label: dest for label, (dest, _, _) in running.items()}


def time_cython(configs: list[str], build: Path | None = None, isa: str = "auto",
                steps: int = 200, max_seconds: float = 5.0) -> dict[str, float]:
    """Median ms per training step of the `cython` rung on each config, in a fresh process.

    build: a folder made by build_copies (None: the repository's build); isa: FASTOPS_ISA for it.
    Matrix products run in fastops' own loops (FASTOPS_BLAS=0 in the subprocess).
    """
    path = [str(build)] if build is not None else []
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "FASTOPS_ISA": isa, "FASTOPS_BLAS": "0",
           "PYTHONPATH": os.pathsep.join([*path, str(ROOT), *inherited])}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        subprocess.run([sys.executable, "-m", "microgpt_lib.measure.bench", "--rungs", "cython",
                        "--configs", *configs, "--steps", str(steps), "--warmup", "20",
                        "--max-seconds", str(max_seconds), "--json", str(out)],
                       env=env, check=True, capture_output=True, cwd=tmp)
        measured = json.loads(out.read_text())["measurements"]
    return {m["config"]: m["median_ms"] for m in measured if m["kind"] == "train"}
