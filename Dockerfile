# The streamlane app image: every service in docker-compose.yml runs one `streamlane` command.
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY streamlane ./streamlane
COPY flows ./flows
COPY generators ./generators
COPY enrichers ./enrichers
COPY sinks ./sinks
COPY dashboards ./dashboards
COPY bench ./bench
COPY schemas ./schemas
COPY reference ./reference
# Editable, so the shipped schemas/ and reference/ stay beside the code that reads them.
RUN pip install -e .

RUN useradd --create-home --uid 1000 streamlane && mkdir -p /data /state \
    && chown streamlane /data /state
USER streamlane
ENTRYPOINT ["streamlane"]
CMD ["--help"]
