"""Print pyproject.toml's requirements, one per line, minus the ones setup.sh pins itself."""
from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exclude", nargs="*", default=[], help="distribution names to leave out")
    parser.add_argument("--extras", nargs="*", default=[], help="optional-dependency groups to add")
    args = parser.parse_args()
    project = tomllib.loads(Path(__file__).resolve().parents[1].joinpath("pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in args.extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    excluded = {name.lower() for name in args.exclude}
    for req in reqs:
        name = re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()
        if name not in excluded:
            print(req)


if __name__ == "__main__":
    main()
