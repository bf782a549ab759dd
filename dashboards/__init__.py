"""Grafana dashboards as code: Python that generates the JSON under dashboards/provisioning/."""
