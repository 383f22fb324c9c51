FROM alpine
MAINTAINER me@example.org
