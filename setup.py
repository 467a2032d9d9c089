"""Build glue: metadata lives in setup.cfg; this file only adds C parts."""
from setuptools import setup

setup()
