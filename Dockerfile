# syntax=docker/dockerfile:1
# rater serve in a container: the wheel is built in one stage (the compiled modules
# need a C compiler), installed in a slim runtime that runs as an unprivileged user.
#
#   docker build -t rater .
#   docker run -v rater-data:/var/lib/rater -p 1812:1812/udp -p 1813:1813/udp \
#       -p 50051:50051 -p 9812:9812 rater
#
# Data (decks, clients, the journal) lives in the volume /var/lib/rater; run the
# other commands in the same container or against the same volume, e.g.
#   docker run --rm -v rater-data:/var/lib/rater --entrypoint rater rater nas list

ARG PYTHON=3.11

FROM python:${PYTHON}-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY ext ext
COPY rater rater
# The project's wheel and those of its dependencies, for the runtime to install offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON}-slim-bookworm
# Pango and a font, which WeasyPrint draws PDF invoices with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
        libharfbuzz-subset0 \
        fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/rater --create-home \
        --shell /usr/sbin/nologin rater
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels rater \
    && rm -rf /wheels
USER rater
WORKDIR /var/lib/rater
ENV RATER_DATA=/var/lib/rater/data \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/rater"]
# RADIUS authorization and accounting, gRPC, Prometheus metrics.
EXPOSE 1812/udp 1813/udp 50051/tcp 9812/tcp
HEALTHCHECK --interval=30s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9812/metrics', timeout=2)"]
# SIGTERM (docker stop) stops the workers after the packets in hand.
STOPSIGNAL SIGTERM
ENTRYPOINT ["rater", "serve"]
CMD ["--listen", "0.0.0.0"]
