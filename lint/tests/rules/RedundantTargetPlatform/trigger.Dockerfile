FROM --platform=$TARGETPLATFORM alpine
RUN true
