ARG VERSION=3.20
FROM alpine:${VERSION}
FROM --platform=$BUILDPLATFORM alpine AS tools
