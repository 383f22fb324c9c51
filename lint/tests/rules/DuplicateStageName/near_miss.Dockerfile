FROM alpine AS base
RUN true
FROM base AS final
RUN true
