FROM --platform=linux/amd64 alpine AS build
RUN true
