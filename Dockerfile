# The imgsim web API: docker build -t fastapi-image-embeddings . && docker run -p 8080:8080 fastapi-image-embeddings
# CPU only and without torch: the default model's export ships in the package (index/model/data/exports),
# and ONNX Runtime / OpenVINO run it. The Milvus client is added for deploy/compose.yaml's Milvus server.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMGSIM_DATA_DIR=/data \
    IMGSIM_MODEL_CACHE_DIR=/data/model-cache

WORKDIR /app

# The service's requirements and the Milvus client, every transitive dependency pinned and hashed (.ci/lock
# makes requirements.lock from requirements.txt, less the editable install of the project itself: its packages
# are copied below and run from /app).
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock && rm requirements.lock

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
