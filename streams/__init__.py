"""Leadstream: real-time lead scoring and routing on Kafka (Faust app, agents and pure core)."""

from streams.native import Choice, activate

__version__ = "0.1.0"

#: The scoring core this process runs: compiled with mypyc, or the Python source, and why.
#: Decided here, before anything imports the core (streams/native.py).
CORE: Choice = activate(__path__)
