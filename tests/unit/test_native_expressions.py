"""No Python function runs inside the pipeline's polars expressions.

Polars runs a query's expressions on its own threads, where a Python function waits for
the interpreter lock; some polars calls hold that lock while they wait for those threads
(pickling a frame, as bytewax does for snapshots and between processes). Both at once
hung a two-process flow for good, so the decoder's expressions and every flow's are
polars' own, and a flow that calls a Python function in one is refused.
"""

from __future__ import annotations

import types
from dataclasses import replace

import polars as pl
import pytest

from streamlane import flow as flow_module
from streamlane.errors import UserError
from streamlane.flow import PYTHON_FUNCTION, flow_names, load_flow
from streamlane.paths import SCHEMAS_DIR
from streamlane.schemas import load_schema


def doubled(values: pl.Series) -> pl.Series:
    return values * 2


def test_polars_prints_a_python_function_as_the_check_expects() -> None:
    called = pl.col("total").map_batches(doubled, return_dtype=pl.Float64)
    assert PYTHON_FUNCTION in str(called)
    assert PYTHON_FUNCTION not in str(pl.col("total") * 2)


@pytest.mark.parametrize("path", sorted(SCHEMAS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_a_schemas_checks_are_polars_own(path) -> None:  # type: ignore[no-untyped-def]
    schema = load_schema(path.stem)
    assert PYTHON_FUNCTION not in str(schema.violation)
    assert PYTHON_FUNCTION not in str(schema.reason_expr())


@pytest.mark.parametrize("name", flow_names())
def test_every_shipped_flow_loads_with_polars_own_expressions(name: str) -> None:
    flow = load_flow(name)
    assert flow.expressions(), "a flow declares its columns as expressions"
    assert not [w for w, e in flow.expressions().items() if PYTHON_FUNCTION in str(e)]


def test_a_flow_calling_a_python_function_is_refused_naming_where(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orders = load_flow("orders")
    called = pl.col("total").map_batches(doubled, return_dtype=pl.Float64)
    declared = replace(orders, derive={**orders.derive, "doubled": called})
    monkeypatch.setattr(flow_module, "flow_names", lambda: ["orders"])
    monkeypatch.setattr(flow_module, "_module", lambda _: types.SimpleNamespace(FLOW=declared))
    with pytest.raises(UserError, match=r"flow 'orders': derive\['doubled'\] calls a Python"):
        load_flow("orders")
