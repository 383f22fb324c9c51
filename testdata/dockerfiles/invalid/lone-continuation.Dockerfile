FROM alpine
\

