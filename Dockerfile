FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_STATIC_ROOT=/app/staticfiles

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# collectstatic needs settings to load; the key is only for this build step.
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && useradd --system --no-create-home ridehail
USER ridehail

EXPOSE 8000
# scripts/serve is ridehail/server.py: uvicorn with the project's flags (--no-proxy-headers: Django
# alone reads X-Forwarded-For, RIDEHAIL_TRUSTED_PROXIES hops; --ws-max-size 64 KiB), on $PORT
# (8000) with $WEB_CONCURRENCY processes (one per core). docker-compose.yml runs `scripts/serve
# http` (gunicorn's sync workers) for HTTP and this for websockets, behind the nginx router.
CMD ["scripts/serve"]
