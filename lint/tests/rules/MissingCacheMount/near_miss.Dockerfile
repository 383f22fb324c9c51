# check=experimental=MissingCacheMount
FROM python:3
RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt
RUN pip --version
