# Stage 1: the alert-history wheel and its dependencies' wheels, built from the source tree.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Stage 2: only those wheels, installed; nothing else of the repo (migrations and static files are package data).
FROM python:3.11-slim
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels alert-history \
 && useradd --system --create-home --home-dir /var/lib/alert-history alert-history
USER alert-history
WORKDIR /var/lib/alert-history
ENV ALERT_HISTORY_WEB_HOST=0.0.0.0 ALERT_HISTORY_DATA_DIR=/var/lib/alert-history
EXPOSE 6066
HEALTHCHECK --interval=5s --timeout=5s --start-period=120s --retries=3 \
  CMD python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)' \
      "http://127.0.0.1:${ALERT_HISTORY_WEB_PORT:-6066}/readyz"
# `worker` applies the migrations first (`alert-history migrate`'s code, idempotent, under an advisory lock, so
# workers starting together are safe), then runs the pipeline and the web API. `migrate` alone: CMD ["migrate"].
ENTRYPOINT ["alert-history"]
CMD ["worker"]
