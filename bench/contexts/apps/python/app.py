# bench/contexts/apps/python: prints what it imported, so a wrong image shows.
from importlib.metadata import version

import flask  # noqa: F401
import requests  # noqa: F401
import yaml  # noqa: F401

print("python app", version("flask"), version("requests"), version("pyyaml"))
