FROM alpine
COPY . /src
