FROM alpine
HEALTHCHECK --interval=5x CMD true
