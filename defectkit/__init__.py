"""defectkit: industrial visual anomaly detection and localization."""

__version__ = "0.2.0.dev0"
