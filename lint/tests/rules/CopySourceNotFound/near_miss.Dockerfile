FROM alpine
COPY a.txt app.py /dst/
COPY *.txt /
COPY --from=alpine /missing /
COPY $VAR /
