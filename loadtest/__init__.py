"""Load tests for Leadstream: a seeded Segment traffic generator, a raw-aiokafka baseline,
and a harness that measures the pipeline against it (`python -m loadtest --help`)."""
