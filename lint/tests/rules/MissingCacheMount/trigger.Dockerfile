# check=experimental=MissingCacheMount
FROM python:3
RUN pip install -r requirements.txt
