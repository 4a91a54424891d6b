# One image for web (gunicorn), worker and beat (Celery); docker-compose.yml runs it three ways.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

# The lock first: the dependency layer is rebuilt only when the lock changes. Hashes are
# checked and nothing is resolved at build time.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY . .

# Static files are collected at build time. The settings need these values to load; they are
# placeholders that reach no service and are not kept in the image's environment. The demo
# settings (the emulator's tenant on loopback, keys generated in the throw-away var folder) load
# without any secret.
RUN PORTAL_DEMO=1 PORTAL_VAR_DIR=/tmp/build-var REDIS_URL=redis://127.0.0.1:6379/0 \
    ENTRA_TENANT_ID=8f2d1c3a-5b6e-4f70-9a81-2c3d4e5f6a7b ENTRA_CLIENT_ID=build \
    ENTRA_CLIENT_SECRET=build ENTRA_LOGIN_HOST=127.0.0.1:8443 GRAPH_URL=https://127.0.0.1:8443 \
    STATIC_ROOT=/app/staticfiles \
    python manage.py collectstatic --noinput \
    && rm -rf /tmp/build-var

RUN useradd --system --uid 10001 --home-dir /app portal \
    && mkdir -p /app/var \
    && chown portal /app/var
USER portal

EXPOSE 8000
# X-Forwarded-* are believed only from PORTAL_TRUSTED_PROXIES (loopback unless set), never '*'.
CMD ["sh", "-c", "exec gunicorn portal.wsgi --bind 0.0.0.0:8000 --workers 3 --access-logfile - --forwarded-allow-ips \"${PORTAL_TRUSTED_PROXIES:-127.0.0.1,::1}\""]
