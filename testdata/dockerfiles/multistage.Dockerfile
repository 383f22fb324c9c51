ARG GO=1.22
FROM golang:${GO} AS builder
WORKDIR /src
COPY . .
RUN go build -o /out/app .

FROM builder as test
RUN go test ./...

FROM scratch
COPY --from=builder /out/app /app
ENTRYPOINT ["/app"]
