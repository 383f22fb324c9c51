FROM alpine
CMD ["echo", "hello"]
FROM alpine AS shelled
SHELL ["/bin/sh", "-c"]
ENTRYPOINT echo hi
