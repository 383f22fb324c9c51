# syntax=docker/dockerfile:1
FROM alpine
RUN <<EOF
echo hello
echo $HOME
EOF
RUN <<-EOT
	echo tabs are stripped
		echo twice
	EOT
RUN <<"QUOTED" <<'SINGLE' cat /dev/stdin
no $expansion here
QUOTED
nor $here
SINGLE
RUN python3 3<<PY
print("fd 3")
PY
COPY <<EOF /etc/motd
Welcome to $HOSTNAME
EOF
COPY --chmod=0755 <<-"SCRIPT" <<NOTES /usr/local/bin/
	#!/bin/sh
	echo script
	SCRIPT
notes
NOTES
ADD <<EOF /add.txt
added
EOF
ONBUILD RUN <<EOF
echo on build
EOF
RUN ["echo", "<<NOTAHEREDOC"]
RUN echo '<<quoted' done
