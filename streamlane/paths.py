"""Where the project's shipped files live (schemas, reference data), independent of the cwd.

`STREAMLANE_REFERENCE_DIR` points the enrichers (and the warehouse's store dimension) at
another folder of reference CSVs with the same columns, e.g. a larger store list.
"""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
REFERENCE_DIR = Path(os.environ.get("STREAMLANE_REFERENCE_DIR") or PROJECT_ROOT / "reference")
