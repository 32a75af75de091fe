# The image --profile k8s runs its pods from: CUDA runtime, Python 3.11, tunemake with the exact versions of
# envs/requirements.lock. Build from the repository root: docker build -t registry.example.com/tunemake:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
# A compiler and cmake: llama-cpp-python builds from source (GGUF conversion, quantization and evaluation on CPU).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential cmake git \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv

WORKDIR /opt/tunemake
COPY envs/requirements.lock envs/requirements.lock
# torch first, with its dependencies: from PyPI on Linux x86_64 that is the CUDA build and its nvidia-* libraries
# (the lock comes from a CPU machine and lists none). Then everything else exactly as locked, resolving nothing.
RUN pip install --upgrade pip \
 && pip install "$(grep -E '^torch==' envs/requirements.lock)" \
 && CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-deps -r envs/requirements.lock
COPY pyproject.toml README.md ./
COPY src src
RUN pip install --no-deps . && tunemake --help >/dev/null

# The Kubernetes executor starts every job in /workdir, where Snakemake unpacks the workflow's sources.
WORKDIR /workdir
