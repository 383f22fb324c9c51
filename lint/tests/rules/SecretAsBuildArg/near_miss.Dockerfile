FROM node:22
ARG NPM_TOKEN
RUN --mount=type=secret,id=NPM_TOKEN,env=NPM_TOKEN echo "token=$NPM_TOKEN" > .npmrc
RUN echo NPM_TOKEN
