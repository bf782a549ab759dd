"""Creates or updates the warehouse data source and the dashboards in a running Grafana.

Idempotent: the data source, the folder and the dashboards have stable uids, so a second
push updates what the first created.
"""

from __future__ import annotations

import json
import re

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.generate import DASHBOARDS, render
from dashboards.sql import DATASOURCE_TYPE, DATASOURCE_UID
from streamlane.errors import UserError

FOLDER_UID = "streamlane"
FOLDER_TITLE = "streamlane"


def datasource(pg_address: str, pg_user: str, pg_password: str) -> dict[str, object]:
    """The data source definition, as in dashboards/provisioning/datasources/streamlane.yaml."""
    return {
        "name": "streamlane warehouse",
        "uid": DATASOURCE_UID,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "url": pg_address,
        "user": pg_user,
        "isDefault": True,
        "jsonData": {
            "database": "warehouse",
            "sslmode": "disable",
            "postgresVersion": 1500,
            "timescaledb": False,
            "maxOpenConns": 8,
        },
        "secureJsonData": {"password": pg_password},
    }


def push(url: str, token: str, pg_address: str, pg_user: str, pg_password: str) -> list[str]:
    """Push data source, folder and dashboards; return the dashboard uids pushed."""
    api = GrafanaApi.from_url(url, credential=token, timeout=10.0)
    try:
        source = datasource(pg_address, pg_user, pg_password)
        try:
            api.datasource.get_datasource_by_uid(DATASOURCE_UID)
            api.datasource.update_datasource_by_uid(DATASOURCE_UID, source)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.datasource.create_datasource(source)
        try:
            api.folder.get_folder(FOLDER_UID)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        pushed = []
        for build in DASHBOARDS.values():
            board = json.loads(render(build))
            api.dashboard.update_dashboard(
                {"dashboard": board, "folderUid": FOLDER_UID, "overwrite": True,
                 "message": "streamlane dashboards push"}
            )  # fmt: skip
            pushed.append(str(board["uid"]))
        return pushed
    except GrafanaException as exc:
        raise UserError(f"Grafana at {url} refused the push: {refusal(exc)}") from None
    except niquests.exceptions.RequestException as exc:
        raise UserError(f"cannot reach Grafana at {url}: {type(exc).__name__}") from None


def refusal(exc: GrafanaException) -> str:
    """What Grafana (or whatever answered at its address) said, in one line: the message of
    a JSON error, the text of an HTML page, with the status, and what to check for a
    refused token."""
    response = exc.response
    if isinstance(response, dict) and "message" in response:
        said = str(response["message"])
    elif isinstance(response, str):
        said = re.sub(r"<[^>]*>", " ", re.sub(r"(?is)<head>.*</head>", " ", response))
    else:
        said = str(exc.message or "")
    said = " ".join(said.split())
    said = said if len(said) <= 200 else said[:199] + "…"
    if exc.status_code in (401, 403):
        said += (
            " (check --token: a service account's, of the Admin role, which a data source needs)"
        )
    return f"HTTP {exc.status_code}: {said}" if exc.status_code else said
