# The asset-webhooks service image: `assethooks run dispatcher|retrier|all` and the CLI.
#
# BASE is the official Python image for users. Any Debian 12 image works too (its python3 is 3.11):
# CI builds FROM a Debian image made locally with debootstrap (scripts/containers.sh), since no image
# registry is reachable there. Extra CA certificates for the build's own downloads (a proxy that inspects
# TLS) go in docker/ca/*.crt: only the build stage sees them, the image never carries them.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN if ! python3 -c 'import ensurepip' 2>/dev/null; then \
      apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY docker/ca/ /tmp/ca/
RUN if ls /tmp/ca/*.crt >/dev/null 2>&1; then \
      cp /tmp/ca/*.crt /usr/local/share/ca-certificates/ && update-ca-certificates >/dev/null; \
    fi
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/assethooks
WORKDIR /src
COPY pyproject.toml README.md ./
COPY assethooks ./assethooks
COPY schemas ./schemas
COPY producers ./producers
COPY consumers ./consumers
RUN /opt/assethooks/bin/pip install -q '.[postgres]' \
    && /opt/assethooks/bin/pip uninstall -q -y pip setuptools

FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
RUN if ! command -v python3 >/dev/null; then \
      apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 ca-certificates \
      && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi \
    && useradd --system --uid 10001 --create-home --home-dir /home/assethooks assethooks
COPY --from=build /opt/assethooks /opt/assethooks
ENV PATH=/opt/assethooks/bin:$PATH PYTHONUNBUFFERED=1
USER assethooks
WORKDIR /home/assethooks
ENTRYPOINT ["assethooks"]
CMD ["run", "all"]
