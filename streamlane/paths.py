"""Where the project's shipped files live (schemas, reference data), independent of the cwd."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
REFERENCE_DIR = PROJECT_ROOT / "reference"
