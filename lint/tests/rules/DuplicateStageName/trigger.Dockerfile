FROM alpine AS base
RUN true
FROM alpine AS base
RUN true
