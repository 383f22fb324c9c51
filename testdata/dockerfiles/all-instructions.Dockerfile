# A stage using every instruction once.
ARG BASE=alpine:3.20
ARG VERSION
FROM --platform=$BUILDPLATFORM ${BASE} AS Build
MAINTAINER someone <someone@example.com>
LABEL org.opencontainers.image.title="demo app" version=1.0 "quoted key"=yes
LABEL legacy label value
ENV PATH=/opt/bin:$PATH HOME=/root
ENV LEGACY some value with spaces
ARG USER=app GROUP
RUN apk add --no-cache curl
RUN ["/bin/sh", "-c", "echo exec form"]
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
EXPOSE 80 443/tcp 53/udp
VOLUME ["/data", "/logs"]
VOLUME /cache /tmp/x
USER app:app
WORKDIR /srv/app
STOPSIGNAL SIGTERM
ONBUILD RUN echo triggered
ONBUILD COPY --from=build /a /b
CMD ["app", "--serve"]
ENTRYPOINT /usr/bin/app --flag
copy . .
