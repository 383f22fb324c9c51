FROM alpine
RUN --mount=type=cache,target=/x,uid=1000,gid=1000,sharing=shraed true
