"""Tests of the metrics, the Grafana dashboard and the alert rules, with promtool and a real Prometheus."""
