FROM alpine
COPY a.txt /
COPY --from=alpine /secret.txt /
