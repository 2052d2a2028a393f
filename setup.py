# setup.py exists only to build the cffi extension out-of-line at install time, so the run
# path never parses C declarations (pyproject.toml cannot name cffi_modules by itself).
from setuptools import setup

setup(cffi_modules=["minicontainer/kernel/_build.py:ffibuilder"])
