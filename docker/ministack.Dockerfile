# syntax=docker/dockerfile:1
# MiniStack, pinned and patched exactly as `make venvs` prepares .venv-ministack: the patcher checks the pin and
# fails the build if a patch no longer applies. It is also the Lambda runtime (MiniStack runs Python handlers with
# this interpreter), so the boto3 the Lambdas import comes from the same requirements file.
# Built by docker-compose.yaml with the repository root as the context.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY localcloud/ministack/requirements.txt /opt/scones/ministack-requirements.txt
RUN pip install --no-cache-dir -r /opt/scones/ministack-requirements.txt

COPY localcloud /opt/scones/localcloud
WORKDIR /opt/scones
RUN python -m localcloud.ministack.patch

# An unprivileged user owns the state volume mounted at /var/lib/ministack. The directories the launcher creates
# before it starts MiniStack exist in the image, so a new volume starts with them.
RUN useradd --system --create-home --home-dir /var/lib/ministack ministack \
    && mkdir -p /var/lib/ministack/state /var/lib/ministack/s3 /var/lib/ministack/tmp \
    && chown -R ministack /var/lib/ministack
USER ministack

# Configured through the environment (docker-compose.yaml), as localcloud/launcher.py starts it: MiniStack's own
# server behind the browser-isolation guard (localcloud/ministack/serve.py, found in the working directory).
ENTRYPOINT ["python", "-m", "localcloud.ministack.serve"]
