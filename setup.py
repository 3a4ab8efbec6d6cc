"""Build the compiled core (extensions only; metadata lives in pyproject.toml).

RATER_DEBUG_BUILD=1 builds with bounds and initialisation checks on, for
chasing a fault in the engine; the default build leaves them off.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("RATER_DEBUG_BUILD") == "1"

extensions = [
    Extension(
        "rater._engine",
        ["ext/_engine.pyx"],
        extra_compile_args=["-O0", "-g"] if debug else ["-O3"],
    ),
    Extension(
        "rater._ingest",
        ["ext/_ingest.pyx"],
        extra_compile_args=["-O0", "-g"] if debug else ["-O3"],
    ),
    Extension(
        "rater._radius",
        ["ext/_radius.pyx"],
        extra_compile_args=["-O0", "-g"] if debug else ["-O3"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["ext"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": debug,
            "wraparound": False,
            "initializedcheck": debug,
            "cdivision": True,
        },
    ),
)
