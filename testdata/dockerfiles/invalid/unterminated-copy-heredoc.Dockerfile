FROM alpine
COPY <<EOF /f
some text
