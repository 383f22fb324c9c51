FROM golang:1.22 AS build
RUN --mount=type=cache,target=/root/.cache/go-build,sharing=locked,id=gocache,mode=0755,uid=1000,gid=1000 \
    --mount=type=bind,source=go.sum,target=go.sum \
    --mount=type=bind,from=deps,src=/src,dst=/src,rw \
    go build ./...
RUN --mount=type=tmpfs,target=/tmp,size=64m true
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc,required=true,env=NPM_TOKEN cat /root/.npmrc
RUN --mount=type=ssh,required git clone git@example.com:x/y.git
RUN --mount=target=/ctx,readonly ls /ctx
RUN --mount=type=cache,target=/var/cache/apt,uid=$APT_UID apt-get update
RUN --network=none --security=insecure echo isolated
RUN --network=host --security=sandbox echo host
