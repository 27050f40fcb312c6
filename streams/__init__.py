"""Leadstream: real-time lead scoring and routing on Kafka (Faust app, agents and pure core)."""

__version__ = "0.1.0"
