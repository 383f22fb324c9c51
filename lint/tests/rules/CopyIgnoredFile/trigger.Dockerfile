FROM alpine
COPY secret.txt /
ADD ./build/out.bin /
