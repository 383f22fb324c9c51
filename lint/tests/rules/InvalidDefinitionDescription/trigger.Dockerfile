# check=experimental=InvalidDefinitionDescription

# a note about the base
FROM alpine AS base
# version to build
ARG VERSION=1
