FROM alpine
ARG BUILD_DATE
RUN apk add curl
RUN make
LABEL created=$BUILD_DATE
