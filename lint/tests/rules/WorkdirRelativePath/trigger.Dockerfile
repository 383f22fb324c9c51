FROM alpine
WORKDIR app
