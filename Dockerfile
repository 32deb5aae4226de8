# Keepwell in HTTP mode (`keepwell serve`) for a team deployment: docs/deploy.md.
#   docker build -t keepwell .
#   docker run -p 3000:3000 --env-file keepwell.env keepwell
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 keepwell \
    && useradd --system --uid 10001 --gid keepwell --home-dir /var/lib/keepwell --create-home \
       --shell /usr/sbin/nologin keepwell

# The package carries its migrations and email templates; nothing of the source stays behind.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY integrations ./integrations
COPY templates ./templates
RUN pip install . && rm -rf /src

USER keepwell
WORKDIR /var/lib/keepwell

EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4)"]
CMD ["keepwell", "serve", "--host", "0.0.0.0"]
