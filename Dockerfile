# The trading bot's image: `docker compose up` runs it (`live`, paper trading) beside PostgreSQL,
# Prometheus and Grafana; README.md, "Deployment with Docker". Any other command runs the same way:
# `docker compose run --rm --no-deps bot backtest`.
FROM python:3.11-slim

# LightGBM's wheel links the system's OpenMP runtime (libgomp.so.1), which the slim image lacks; every
# other native library (TA-Lib's C library, libpq, BLAS) comes inside the wheels.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /app

# The pins first, alone: changing the code does not reinstall them.
COPY requirements.txt .
RUN pip install --only-binary=:all: -r requirements.txt

# The code belongs to root and is read-only to the bot; it writes only to the folders below.
COPY . .
RUN groupadd --system --gid 10001 trader \
 && useradd --system --uid 10001 --gid trader --create-home --home-dir /home/trader trader \
 && mkdir -p /var/lib/trader/live /app/runs /app/models/registry /app/.cache \
 && chown trader:trader /var/lib/trader/live /app/runs /app/models/registry /app/.cache
USER trader

# live.state_dir of deploy/live.toml (live.log, strategy state, session reports), backtest outputs,
# trained models (`train`, live `--model`), the feature cache (features.cache_dir).
VOLUME ["/var/lib/trader/live", "/app/runs", "/app/models/registry", "/app/.cache"]
# Prometheus metrics: live.metrics_port of deploy/live.toml
EXPOSE 9108

ENTRYPOINT ["python", "run.py"]
CMD ["live", "--config", "deploy/live.toml"]
