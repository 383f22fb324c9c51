FROM alpine
ADD rootfs.tar.gz /
ADD https://example.com/a.txt /
COPY app.py /app/
