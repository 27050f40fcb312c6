"""Loaded at start-up by the workers `python -m loadtest.ablation` starts (on their
PYTHONPATH): takes out the part `LEADSTREAM_ABLATE` names."""

import os

if os.environ.get("LEADSTREAM_ABLATE"):
    from loadtest.ablation import install

    install(os.environ["LEADSTREAM_ABLATE"])
