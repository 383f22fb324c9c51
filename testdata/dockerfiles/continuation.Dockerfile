FROM alpine
RUN echo one \
# a comment inside the continuation is dropped
    two \

    three
RUN echo "trailing backslash kept" \\
ENV A=1 \
    B=2
RUN a \
  # indented comment also dropped
  b
# a comment line ending in a backslash does not continue \
RUN echo after-comment
RUN echo ends-at-eof \
