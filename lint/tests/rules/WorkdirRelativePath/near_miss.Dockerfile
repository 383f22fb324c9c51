FROM alpine AS base
WORKDIR /app
WORKDIR src
FROM base
WORKDIR more
