FROM alpine
COPY a.txt /src/
