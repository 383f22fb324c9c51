FROM alpine
RUN --mount=type=secret echo
