# syntax=docker/dockerfile:1
# Build the wheel (the compiled engine needs a C compiler), then install it
# alone into a slim runtime that runs as an unprivileged user.

FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY ext ext
COPY rater rater
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/rater --shell /usr/sbin/nologin rater
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER rater
WORKDIR /var/lib/rater
ENV RATER_DATA=/var/lib/rater/data
VOLUME ["/var/lib/rater/data"]
ENTRYPOINT ["rater"]
CMD ["demo"]
