"""A SQL query target for Grafana's PostgreSQL data source (the SDK ships no SQL builder)."""

from __future__ import annotations

from typing import Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "streamlane-warehouse"
WAREHOUSE = dashboard.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

Format = Literal["time_series", "table"]


class SqlQuery(cogvariants.Dataquery):
    """The target JSON the PostgreSQL data source reads: raw SQL in code mode."""

    def __init__(self, ref_id: str, raw_sql: str, format: Format) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = format

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": WAREHOUSE.to_json(),
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }


class SqlTarget(cogbuilder.Builder[SqlQuery]):
    """Builder for one SQL target of a panel."""

    def __init__(self, raw_sql: str, format: Format = "time_series", ref_id: str = "A") -> None:
        self._internal = SqlQuery(ref_id, raw_sql.strip(), format)

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def build(self) -> SqlQuery:
        return self._internal
