# Image for the worker and the bot in temporal-dev.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps .
ENV AUTODISPATCH_DATA_DIR=/data
CMD ["autodispatch", "worker"]
