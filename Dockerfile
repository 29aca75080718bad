# One image for every process kind of the Procfile: `web`, `worker`, `beat` (the command; see
# ops/aws/run-process), or a one-off command such as `python manage.py migrate`. It holds the runtime
# requirements only, hash-checked, runs as an unprivileged user, and carries no secret: every key and
# URL comes from the environment when a container starts (README, "Deploying").
# Checked by make lint-infra (hadolint) and tests/test_deploy_docker.py.

# --- build: the locked runtime requirements, the code, and the collected static files ---------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.txt
WORKDIR /app
COPY . .
# collectstatic needs DEBUG off (it writes the hashed names whitenoise serves), and with DEBUG off the
# settings refuse to load without real-looking keys: throwaway ones, made in this RUN and never stored.
RUN DJANGO_DEBUG=false DJANGO_ENV_FILE='' DJANGO_STATIC_ROOT=/app/static \
    REDIS_URL=redis://127.0.0.1:6379/0 \
    DJANGO_SECRET_KEY="$(/opt/venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    FIELD_ENCRYPTION_KEYS="$(/opt/venv/bin/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    BLIND_INDEX_KEY="$(/opt/venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(48))')" \
    /opt/venv/bin/python manage.py collectstatic --noinput

# --- runtime ---------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_STATIC_ROOT=/app/static \
    DJANGO_ENV_FILE=""
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The code stays root's (read-only to the app); only var/ (metrics, heartbeats, beat's schedule) is writable.
COPY --from=build /app /app
RUN mkdir -p /app/var && chown app:app /app/var
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 CMD ["/app/ops/aws/healthcheck"]
ENTRYPOINT ["/app/ops/aws/run-process"]
CMD ["web"]
