"""Writes the dashboards' JSON under dashboards/provisioning/dashboards/, or checks it is current.

python -m dashboards.generate          # regenerate
python -m dashboards.generate --check  # exit 1 if the committed JSON differs
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard

from dashboards import clickstream, pipeline_health, pizza_orders

OUT = Path(__file__).parent / "provisioning" / "dashboards"
DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "pizza-orders.json": pizza_orders.build,
    "pipeline-health.json": pipeline_health.build,
    "clickstream.json": clickstream.build,
}


def render(build: Callable[[], dashboard.Dashboard]) -> str:
    """A dashboard as the JSON Grafana provisions (stable key order, trailing newline)."""
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are out of date")
    args = parser.parse_args()
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(
            f"out of date (run python -m dashboards.generate): {', '.join(stale)}", file=sys.stderr
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
