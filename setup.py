"""Build fastops: the Cython extension `_gpt` (and `_gpt_v3`), annotated (chapter 5 shows the HTML).

`fastops/_gpt.pyx` includes the .pxi files that hold the kernels, the model and the entry points;
Cython writes one annotated HTML page per file (fastops/kernels.html, ...).

Portable by default: -O3 for the baseline of the architecture, OpenMP if the compiler accepts
-fopenmp (tested by compiling a tiny program; without it the kernels run on one thread). On
x86-64 the kernels are compiled twice: `_gpt` for the baseline (SSE2) and `_gpt_v3` for
x86-64-v3 (AVX2, FMA); fastops picks one at import by asking the CPU, so the build still runs
anywhere. FASTOPS_NATIVE=1 opts in to -march=native for both (this CPU's vector units, e.g.
AVX-512) and FASTOPS_FAST_MATH=1 to -ffast-math (reassociated sums: different rounding).
FASTOPS_MODULES=_gpt (a comma-separated list) builds only those modules: a copy built to time
other flags (chapter 5) needs only the kernels.
"""
import platform
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup


def compiler_accepts(flags: list[str], runtime: bool = True) -> bool:
    """True if the C compiler builds and links a small program with these flags (one that calls
    the OpenMP runtime when `runtime`)."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    source = ("#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
              if runtime else "int main(void) { return 0; }\n")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(source)
        cmd = [*cc.split(), *flags, str(src), "-o", str(Path(tmp) / "probe")]
        try:
            return subprocess.run(cmd, capture_output=True).returncode == 0
        except OSError:
            return False


def flag_on(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


compile_args = ["-O3", "-fno-math-errno"]  # sqrt need not set errno: it can vectorise
link_args: list[str] = []
if flag_on("FASTOPS_NATIVE"):
    compile_args.append("-march=native")
if flag_on("FASTOPS_FAST_MATH"):
    compile_args.append("-ffast-math")
    link_args.append("-lm")  # -ffast-math vectorises exp through glibc's libmvec, part of -lm
if not flag_on("FASTOPS_NO_OPENMP") and compiler_accepts(["-fopenmp"]):
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
else:
    print("fastops: building without OpenMP (kernels will use one thread)", file=sys.stderr)
    if compiler_accepts(["-fopenmp-simd"], runtime=False):
        compile_args.append("-fopenmp-simd")  # the simd pragmas need no runtime

# (module, flags placed before compile_args, so that FASTOPS_NATIVE's -march=native wins)
modules = [("_gpt", []), ("_bpe", []), ("_stream", [])]
V3 = ["-march=x86-64-v3"]
if platform.machine().lower() in ("x86_64", "amd64") and compiler_accepts(V3, runtime=False):
    modules.append(("_gpt_v3", V3))  # _gpt_v3.pyx includes _gpt.pyx
else:
    print("fastops: no x86-64-v3 build (not x86-64, or the compiler lacks -march=x86-64-v3)",
          file=sys.stderr)
if os.environ.get("FASTOPS_MODULES"):
    wanted = os.environ["FASTOPS_MODULES"].split(",")
    unknown = set(wanted) - {name for name, _ in modules}
    if unknown:
        sys.exit(f"FASTOPS_MODULES: no module {', '.join(sorted(unknown))} to build here")
    modules = [(name, flags) for name, flags in modules if name in wanted]

extensions = [
    Extension(
        f"fastops.{name}",
        [f"fastops/{name}.pyx"],
        depends=["fastops/attention_head.h"],  # C included by kernels.pxi: rebuild when it changes
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=flags + compile_args,
        extra_link_args=link_args,
        libraries=["dl"] if sys.platform.startswith("linux") else [],  # dlopen: fastops' BLAS
    )
    for name, flags in modules
]

setup(
    ext_modules=cythonize(
        extensions,
        annotate=True,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )
)
