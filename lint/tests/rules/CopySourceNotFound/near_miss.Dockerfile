FROM alpine
COPY a.txt app.py /dst/
COPY *.txt /
COPY package.json yarn.lock* ./
COPY --parents build/**/out.bin /dst/
COPY --from=alpine /missing /
COPY $VAR /
