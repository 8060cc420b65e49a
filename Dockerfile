# The asset-webhooks service image: `assethooks run dispatcher|retrier|all` and the CLI.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY assethooks ./assethooks
COPY schemas ./schemas
COPY producers ./producers
COPY consumers ./consumers
RUN pip install --no-cache-dir '.[postgres]'
USER nobody
ENTRYPOINT ["assethooks"]
CMD ["run", "all"]
