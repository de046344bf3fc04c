# wecom-tagbot: one image for the web, the workers and the scheduler (docker-compose.yml).
# Dependencies come from requirements.lock only, each checked against its hash; the project
# itself is installed without dependencies. Configured from the environment (TAGBOT_CONFIG=env).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 tagbot \
    && useradd --system --uid 10001 --gid tagbot --home-dir /home/tagbot --create-home \
       --shell /usr/sbin/nologin tagbot

WORKDIR /opt/tagbot
# The lock first: this layer is rebuilt only when the lock changes, not on every code edit.
COPY requirements.lock ./
RUN python -m pip install --require-hashes -r requirements.lock

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY jobs ./jobs
COPY tagbot ./tagbot
COPY wecom_sim ./wecom_sim
# setuptools and wheel are in the lock: building needs nothing unpinned from the index.
RUN python -m pip install --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info

USER 10001:10001
WORKDIR /home/tagbot
ENV TAGBOT_CONFIG=env \
    TAGBOT_SERVER__HOST=0.0.0.0 \
    TAGBOT_SERVER__PORT=8000
EXPOSE 8000

# /healthz checks the database. Workers and the scheduler serve no HTTP: compose turns this off
# for them.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TAGBOT_SERVER__PORT', '8000') + '/healthz', timeout=4)"]

ENTRYPOINT ["tagbot"]
CMD ["serve", "--no-jobs"]
