FROM alpine
ARG FOO=1
COPY $FOOO /dst
ENV PATH=$PATH:/opt/bin
