# syntax=docker/dockerfile:1

# Leadstream worker image.
#
#   docker build -t leadstream .
#   docker run --rm -p 6066:6066 -e LEADSTREAM_BROKER=kafka://broker:9092 leadstream
#
# Every setting is an environment variable with the LEADSTREAM_ prefix (streams/settings.py);
# the default command is `leadstream worker`, /metrics is served on port 6066.

# A patch release pinned, so rebuilding an old commit gives the same interpreter; bump on purpose.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: install the project and its dependencies into a self-contained virtualenv ----
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, read from pyproject.toml alone: this layer stays cached until the
# dependency list changes, so a code change does not download everything again.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the project itself, as a regular (non-editable) wheel install: the package data (the
# bundled lead model, the JSON schemas) lands in site-packages and /src is not needed at run time.
# `pip check` fails the build if the layer above no longer satisfies pyproject.toml.
COPY . .
RUN pip install --no-deps . \
    && pip check

# The scoring core compiled with mypyc into the installed package (streams/_native/; see
# streams/native.py): the compiler and mypy stay in this stage. The last step fails the
# build unless the installed core (not /src's copy: hence the cd) loads compiled without
# mypy. --build-arg NATIVE=0 keeps the pure-Python core.
ARG NATIVE=1
RUN if [ "$NATIVE" = 1 ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/* \
        && pip install "$(python -c 'import tomllib; print(next(d for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dev"] if d.startswith("mypy")))')" \
        && leadstream core build \
        && pip uninstall -y mypy \
        && cd / && python -c 'import streams, streams.leads, streams.scoring, streams.construct as c; assert streams.CORE.compiled, streams.CORE; assert c.trusted is not c.python_trusted'; \
    fi

# ---- runtime: the interpreter, the virtualenv and nothing else ----
FROM ${PYTHON_IMAGE} AS runtime

# Bytecode was compiled at install time and /opt/venv is read-only for the app user.
# The Faust data dir gets a fixed, writable path (it defaults to one relative to the CWD).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LEADSTREAM_DATA_DIR=/var/lib/leadstream

RUN groupadd --system --gid 10001 leadstream \
    && useradd --system --uid 10001 --gid leadstream --home-dir /var/lib/leadstream \
        --no-create-home --shell /usr/sbin/nologin leadstream \
    && install -d -o leadstream -g leadstream -m 0750 /var/lib/leadstream

# rocksdict (LEADSTREAM_STORE=rocksdb) links the C++ runtime, which slim images may lack.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libstdc++6 \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/venv /opt/venv
# Fail the build, not the first start, if the RocksDB binding cannot load.
RUN python -c 'import rocksdict'

WORKDIR /var/lib/leadstream
# Numeric, so orchestrators that enforce "run as non-root" can verify it without /etc/passwd.
USER 10001:10001

EXPOSE 6066
# Exec form: leadstream is PID 1 and receives SIGTERM itself, so Faust shuts down cleanly.
ENTRYPOINT ["leadstream"]
CMD ["worker"]
