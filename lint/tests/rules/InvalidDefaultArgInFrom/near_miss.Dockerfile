ARG TAG=3.20
ARG IMG=busybox
FROM alpine:${TAG}
FROM ${IMG}
