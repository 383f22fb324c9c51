# check=experimental=InvalidDefinitionDescription

# base is the build stage
FROM alpine AS base
# VERSION to build
ARG VERSION=1
# just a note

ARG OTHER=2
