FROM python:3.11-slim
WORKDIR /srv/alert-history
COPY pyproject.toml README.md ./
COPY app app
COPY agents agents
COPY tables tables
COPY sinks sinks
COPY web web
COPY migrations migrations
RUN pip install --no-cache-dir .
ENV ALERT_HISTORY_WEB_HOST=0.0.0.0 ALERT_HISTORY_DATA_DIR=/var/lib/alert-history
EXPOSE 6066
ENTRYPOINT ["alert-history"]
CMD ["worker"]
