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
# The flags are ridehail/server.py's (why: see there): --no-proxy-headers, Django alone reads
# X-Forwarded-For (RIDEHAIL_TRUSTED_PROXIES hops); --ws-max-size, a client sending more than
# 64 KiB at once is closed (1009).
CMD ["uvicorn", "ridehail.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--no-proxy-headers", "--ws-max-size", "65536"]
