FROM alpine
run --platform=linux/amd64 echo
