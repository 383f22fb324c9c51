FROM alpine
ENV FOO bar
LABEL maintainer me
