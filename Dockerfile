# The slotwise image the manifests in deploy/ run: docker build -t slotwise:0.1.0 .
# Slim, and as the Deployment runs it: user 65532 (not root), a read-only root filesystem, the
# SQLite file and /tmp on volumes.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY slotwise slotwise
COPY scheduler scheduler
COPY quota quota
COPY mig mig
COPY burst burst
COPY simulator simulator
RUN python -m venv /opt/slotwise && /opt/slotwise/bin/pip install --no-cache-dir .

FROM python:3.12-slim
COPY --from=build /opt/slotwise /opt/slotwise
ENV PATH=/opt/slotwise/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["slotwise"]
CMD ["serve", "--help"]
