FROM alpine AS good-stage
RUN true
