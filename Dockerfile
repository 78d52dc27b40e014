# Image for the worker and the bot in temporal-dev.yml.
FROM python:3.11-slim
WORKDIR /app
# Tesseract OCR for order screenshots (docs/screenshots.md); without it pictures get "send it as text".
RUN apt-get update && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-rus \
    tesseract-ocr-eng && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml requirements.lock README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps .
ENV AUTODISPATCH_DATA_DIR=/data
CMD ["autodispatch", "worker"]
