"""Build fastops: every fastops/*.pyx becomes an extension, annotated (the HTML is chapter 5 material)."""
from Cython.Build import cythonize
import numpy
from setuptools import Extension, setup

extensions = [
    Extension(
        "fastops._adam",
        ["fastops/_adam.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        annotate=True,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )
)
