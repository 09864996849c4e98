# One image for both roles: the API (gunicorn) and the worker (celery); docker-compose.yml
# picks the command. The API never imports torch, but sharing the image keeps one build.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MOBILECONV_DATA_DIR=/data \
    MOBILECONV_BIND=0.0.0.0:8000

RUN useradd --create-home --uid 10001 mobileconv
WORKDIR /app

COPY pyproject.toml README.md ./
COPY service ./service
COPY worker ./worker
COPY openapi.yaml ./
RUN pip install --upgrade pip && pip install '.[s3]'

RUN mkdir -p /data && chown mobileconv /data
USER mobileconv
VOLUME ["/data"]
EXPOSE 8000

CMD ["gunicorn", "-c", "service/gunicorn_conf.py", "service.app:create_app()"]
