FROM scratch AS rootfs
COPY a.txt /
