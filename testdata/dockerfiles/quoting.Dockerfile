FROM ubuntu
ENV name=value\ value2 name2="a\"b" name3='single $quoted'
ENV legacy "quoted value" kept
LABEL "com.example.vendor"="ACME Inc" description="multi \
word"
ARG abc="123 456" def
COPY -- --looks-like-a-flag /dst/
COPY --chown="app user" "space file" /dst/
RUN echo "a \
   b" && echo 'c \\ d'
CMD echo "$HOME" \$NOT_EXPANDED
