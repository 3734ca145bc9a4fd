"""Print pip constraints that pin every runtime dependency (and the replay, ibm and ray
extras') to its declared lower bound, so that CI tests the oldest versions pyproject.toml
admits."""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
for spec in project["dependencies"] + project["optional-dependencies"]["replay"] \
        + project["optional-dependencies"]["ibm"] + project["optional-dependencies"]["ray"]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)", spec)
    if not m:
        sys.exit(f"lowest.py: {spec!r} has no lower bound")
    print(f"{m.group(1)}=={m.group(2)}")
