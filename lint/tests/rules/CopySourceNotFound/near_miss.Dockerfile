FROM alpine
COPY a.txt app.py /dst/
COPY *.txt /
COPY package.json yarn.lock* ./
COPY --from=alpine /missing /
COPY $VAR /
