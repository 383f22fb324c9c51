FROM rust:1
ARG COMMIT_SHA
ENV GIT_SHA=${COMMIT_SHA}
RUN cargo build --release
ARG BUILD_DATE
RUN echo "built $BUILD_DATE" > /built
