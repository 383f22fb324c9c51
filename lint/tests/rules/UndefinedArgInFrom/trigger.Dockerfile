FROM alpine:${VERSON}
RUN true
