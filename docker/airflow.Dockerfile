# syntax=docker/dockerfile:1
# Two images from one file, built by docker-compose.yaml with the repository root as the context (.dockerignore
# sends only the requirements files and localcloud/):
#   airflow          the official image plus requirements.txt: api-server, scheduler, dag-processor, triggerer
#   local-sagemaker  the local SageMaker, which runs in the same Python environment as Airflow, as it runs in
#                    .venv outside containers, plus the "PyTorch framework container" venv its jobs run in
#
# The tag is the apache-airflow pin in requirements.txt (tests/compose checks that they agree) on Python 3.11,
# the interpreter the project's virtual environments and tests use.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

FROM ${AIRFLOW_IMAGE} AS airflow
# As the image's documentation advises: install as the airflow user and name the image's own Airflow version, so
# pip can never move it. requirements.txt pins the same version; if they disagree the build fails here.
COPY requirements.txt /opt/scones/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/scones/requirements.txt


FROM airflow AS local-sagemaker
USER root
# Training jobs and model servers run in their own venv, as .venv-pytorch does outside containers. PyTorch's CPU
# wheel index keeps the multi-gigabyte CUDA build out of a CPU-only image (build with TORCH_INDEX_URL= for PyPI
# alone). sagemaker-training compiles a small C extension, so a compiler is present for this step only.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY localcloud/sagemaker/requirements-pytorch.txt /opt/scones/requirements-pytorch.txt
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && python -m venv /opt/venv-pytorch \
    && /opt/venv-pytorch/bin/pip install --no-cache-dir \
         ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r /opt/scones/requirements-pytorch.txt \
    && apt-get purge -y build-essential \
    && apt-get autoremove -yqq --purge \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
COPY localcloud /opt/scones/localcloud
# The state volume (SQLite, training and model directories) is mounted here; the airflow user must own it.
# /opt/ml is the empty mount point each training job's own directory is bound on (runners/container.py).
RUN mkdir -p /var/lib/local-sagemaker /opt/ml && chown airflow:0 /var/lib/local-sagemaker
USER airflow
WORKDIR /opt/scones
ENV PYTHONPATH=/opt/scones
# One server, not Airflow's entrypoint; its arguments are in docker-compose.yaml, mirroring localcloud/launcher.py.
ENTRYPOINT ["python", "-m", "localcloud.sagemaker.server"]
