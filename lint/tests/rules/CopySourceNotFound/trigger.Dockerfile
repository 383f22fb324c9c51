FROM alpine
COPY missing.txt /
COPY *.md /docs/
