"""Alerting: rules from the config file (rules), the pure evaluation engine
(engine) and notifiers on a background dispatcher (notify).  docs/alerts.md."""

from .rules import AlertsConfig, NotifierSpec, Rule

__all__ = ["AlertsConfig", "NotifierSpec", "Rule"]
