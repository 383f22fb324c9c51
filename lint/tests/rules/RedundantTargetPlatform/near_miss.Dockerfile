FROM --platform=$BUILDPLATFORM alpine
RUN true
