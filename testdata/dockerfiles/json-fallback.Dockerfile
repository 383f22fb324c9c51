FROM alpine
CMD ['echo','single quotes are not JSON']
CMD ["echo", "unterminated"
ENTRYPOINT []
CMD []
RUN [ "echo", "a\tb", "\u2665" ]
VOLUME [not json]
